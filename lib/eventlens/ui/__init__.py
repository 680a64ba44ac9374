"""Streamlit widgets and state shared by the pages: the only library code that imports streamlit."""
