-- NativeAuthenticator's users_info table, as the hub's SQLite database has it.
--
-- Source: jupyterhub/nativeauthenticator, file nativeauthenticator/orm.py,
-- version 1.3.0 (class UserInfo, __tablename__ = "users_info"):
--   id               Integer, primary_key=True, autoincrement=True
--   username         String(128), nullable=False   (no unique constraint)
--   password         LargeBinary, nullable=False   (bcrypt hash bytes)
--   is_authorized    Boolean, default=False
--   login_email_sent Boolean, default=False
--   email            String(128)
--   has_2fa          Boolean, default=False
--   otp_secret       String(16)
-- NativeAuthenticator creates the table at start with
-- UserInfo.__table__.create(db.bind) when it is missing. The DDL below is
-- what SQLAlchemy 1.4 (Debian's python3-sqlalchemy 1.4.46, the version the
-- test hub runs on) emits for that model on SQLite; the defaults are applied
-- by SQLAlchemy in Python, not by the database. IF NOT EXISTS is added so
-- that tests sharing one hub database can all apply it.
CREATE TABLE IF NOT EXISTS users_info (
	id INTEGER NOT NULL,
	username VARCHAR(128) NOT NULL,
	password BLOB NOT NULL,
	is_authorized BOOLEAN,
	login_email_sent BOOLEAN,
	email VARCHAR(128),
	has_2fa BOOLEAN,
	otp_secret VARCHAR(16),
	PRIMARY KEY (id)
);
