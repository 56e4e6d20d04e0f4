"""Sign a user up the way NativeAuthenticator 1.3.0's SignUpHandler does.

Usage: /usr/bin/python3 signup.py DB USERNAME PASSWORD [EMAIL]

Creates users_info from users_info.sql (next to this file) when missing,
then inserts a row like UserInfo(username=..., password=bcrypt.hashpw(
password.encode(), bcrypt.gensalt()), email=...) with is_authorized false:
the password is a BLOB of bcrypt hash bytes, otp_secret a base32 string.
Run it with Debian's python3 (python3-bcrypt), not a pyenv shim.
"""
import base64
import os
import pathlib
import sqlite3
import sys

import bcrypt

db, username, password = sys.argv[1:4]
email = sys.argv[4] if len(sys.argv) > 4 else None
schema = (pathlib.Path(__file__).parent / "users_info.sql").read_text()
con = sqlite3.connect(db, timeout=10)
with con:
    con.executescript(schema)
with con:
    con.execute(
        "INSERT INTO users_info (username, password, is_authorized, login_email_sent, email, has_2fa, otp_secret)"
        " VALUES (?, ?, 0, 0, ?, 0, ?)",
        (
            username,
            bcrypt.hashpw(password.encode(), bcrypt.gensalt()),
            email,
            base64.b32encode(os.urandom(10)).decode("utf-8"),
        ),
    )
con.close()
