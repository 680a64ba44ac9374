"""The store on ClickHouse: `ClickHouseStore` (clickhouse-connect, a server or chDB in process),
its tables (`schema`), and the Explore SQL that differs from DuckDB's (`explore_sql`)."""
