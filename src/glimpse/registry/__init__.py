"""The registry: image metadata in SQL (SQLite, PostgreSQL, MySQL/MariaDB) through SQLAlchemy."""
