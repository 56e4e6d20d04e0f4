"""Check a password the way NativeAuthenticator 1.3.0 does at login.

Usage: /usr/bin/python3 checkpw.py DB USERNAME PASSWORD

Reads the first users_info row of USERNAME (UserInfo.find) through Python's
sqlite3 module and prints, on one line each:
  type: <the Python type of the password column>   (bytes for a BLOB)
  valid: True|False   (UserInfo.is_valid_password:
                       bcrypt.hashpw(pw.encode(), stored) == stored)
Exits 1 when the user has no row. Run it with Debian's python3.
"""
import sqlite3
import sys

import bcrypt

db, username, password = sys.argv[1:4]
con = sqlite3.connect(db, timeout=10)
row = con.execute(
    "SELECT password FROM users_info WHERE username = ? ORDER BY id LIMIT 1", (username,)
).fetchone()
con.close()
if row is None:
    print("no row for", username)
    sys.exit(1)
stored = row[0]
print("type:", type(stored).__name__)
if isinstance(stored, str):
    stored = stored.encode()
try:
    ok = bcrypt.hashpw(password.encode(), stored) == stored
except ValueError as e:
    print("error:", e)
    ok = False
print("valid:", ok)
