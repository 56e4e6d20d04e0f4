package users

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/firetech/fireops/pkg/exitcode"
)

// DefaultBusyTimeout is how long a write waits for the hub's own lock on
// the database before it gives up.
const DefaultBusyTimeout = 5 * time.Second

// Info is one row of NativeAuthenticator's users_info table.
type Info struct {
	// ID is the row id.
	ID int64
	// Name is the hub username.
	Name string
	// Email is the address given at sign-up, or "".
	Email string
	// Approved is the is_authorized column: the user may log in.
	Approved bool
	// Has2FA says the user asked for two-factor authentication at sign-up.
	Has2FA bool
}

// Change is the state of one user before and after a command.
type Change struct {
	// Name is the hub username.
	Name string `json:"name"`
	// Before is the state before the command, e.g. "pending".
	Before string `json:"before"`
	// After is the state the command set, e.g. "approved".
	After string `json:"after"`
	// Changed is false when the user already was in the wanted state.
	Changed bool `json:"changed"`
}

// Store reads and writes NativeAuthenticator's users_info table inside the
// hub's SQLite database. Every write is one short IMMEDIATE transaction
// that waits at most the busy timeout for the hub's lock, so it is safe
// while the hub runs.
type Store struct {
	db   *sql.DB
	path string
	busy time.Duration
}

// OpenStore opens the hub database at path, which must exist and hold the
// users_info table. busy is the busy timeout; 0 means DefaultBusyTimeout.
func OpenStore(ctx context.Context, path string, busy time.Duration) (*Store, error) {
	if busy <= 0 {
		busy = DefaultBusyTimeout
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("hub database %s: %w", path, err)
	}
	st, err := os.Stat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, exitcode.Usagef("check hub.db_path, or hub.db_volume and hub.db_file, in the config",
			"hub database %s does not exist", abs)
	case errors.Is(err, os.ErrPermission):
		return nil, exitcode.New(exitcode.Usage, fmt.Errorf("hub database %s: %w", abs, err),
			"run fireops as root (the database lives in a Docker volume), or set hub.db_path")
	case err != nil:
		return nil, fmt.Errorf("hub database %s: %w", abs, err)
	case !st.Mode().IsRegular():
		return nil, exitcode.Usagef("point hub.db_path (or hub.db_file) at the hub's jupyterhub.sqlite",
			"hub database %s is not a regular file", abs)
	}
	q := url.Values{}
	q.Set("mode", "rw") // never create a database that is not there
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Set("_txlock", "immediate")
	dsn := (&url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open hub database %s: %w", abs, err)
	}
	// One connection: fireops does a few short statements, and a second
	// connection of our own could only contend with the first.
	db.SetMaxOpenConns(1)
	s := &Store{db: db, path: abs, busy: busy}
	var n int
	err = db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'users_info'`).Scan(&n)
	if err != nil {
		db.Close()
		return nil, s.wrap("read hub database", err)
	}
	if n == 0 {
		db.Close()
		return nil, exitcode.Usagef("the hub must use NativeAuthenticator (it creates the table at start); check that the path is the hub's database",
			"hub database %s has no users_info table", abs)
	}
	return s, nil
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// wrap turns SQLite errors into one-line errors with a hint: a busy or
// locked database, a read-only file, a corrupt file.
func (s *Store) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return exitcode.New(exitcode.Failure,
				fmt.Errorf("%s: hub database %s is locked (waited %s): %w", what, s.path, s.busy, err),
				"another process (the hub, a backup) holds a write lock; nothing was changed, run the command again")
		case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN:
			return exitcode.New(exitcode.Failure,
				fmt.Errorf("%s: hub database %s: %w", what, s.path, err),
				"fireops needs write access to the database file and its folder: run it as root or fix the permissions")
		case sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
			return exitcode.New(exitcode.Failure,
				fmt.Errorf("%s: %s is not a usable SQLite database: %w", what, s.path, err),
				"check hub.db_path, or hub.db_volume and hub.db_file")
		}
	}
	return fmt.Errorf("%s: hub database %s: %w", what, s.path, err)
}

// selectInfo selects the users_info columns an Info is scanned from, in
// order; a WHERE or ORDER BY clause is appended.
const selectInfo = `SELECT id, username, coalesce(email, ''), coalesce(is_authorized, 0), coalesce(has_2fa, 0) FROM users_info `

// infos runs the SELECT of selectInfo followed by where and scans the rows.
func (s *Store) infos(ctx context.Context, what, where string, args ...any) ([]Info, error) {
	rows, err := s.db.QueryContext(ctx, selectInfo+where, args...)
	if err != nil {
		return nil, s.wrap(what, err)
	}
	defer rows.Close()
	var out []Info
	for rows.Next() {
		var in Info
		if err := rows.Scan(&in.ID, &in.Name, &in.Email, &in.Approved, &in.Has2FA); err != nil {
			return nil, s.wrap(what, err)
		}
		out = append(out, in)
	}
	return out, s.wrap(what, rows.Err())
}

// List returns every users_info row, ordered by id.
func (s *Store) List(ctx context.Context) ([]Info, error) {
	return s.infos(ctx, "list users", `ORDER BY id`)
}

// Names returns the distinct usernames of users_info.
func (s *Store) Names(ctx context.Context) ([]string, error) {
	infos, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var names []string
	for _, in := range infos {
		if !seen[in.Name] {
			seen[in.Name] = true
			names = append(names, in.Name)
		}
	}
	return names, nil
}

// Find returns the rows of name (NativeAuthenticator has no unique
// constraint on username, so there may be more than one), by id.
func (s *Store) Find(ctx context.Context, name string) ([]Info, error) {
	return s.infos(ctx, "find user", `WHERE username = ? ORDER BY id`, name)
}

// tx runs fn in one IMMEDIATE transaction: it takes the write lock at
// BEGIN (waiting at most the busy timeout), so fn never fails half way for
// a lock, and it commits only when fn returns nil.
func (s *Store) tx(ctx context.Context, what string, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap(what, err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return s.wrap(what, tx.Commit())
}

// CheckWritable takes the database's write lock and releases it at once.
// Commands that change the hub first and the database second call it
// before changing the hub, so that a locked database fails them before
// anything has changed.
func (s *Store) CheckWritable(ctx context.Context) error {
	return s.tx(ctx, "lock hub database", func(*sql.Tx) error { return nil })
}

// SetApproved sets is_authorized of every named user to approved, in one
// transaction. It never toggles: a user already in that state is reported
// unchanged. When a name has no row, nothing is changed and the error
// names the unknown users and close matches.
func (s *Store) SetApproved(ctx context.Context, names []string, approved bool) ([]Change, error) {
	state := func(v bool) string {
		if v {
			return "approved"
		}
		return "pending"
	}
	var changes []Change
	err := s.tx(ctx, "set approval", func(tx *sql.Tx) error {
		var unknown []string
		for _, name := range names {
			var n, ok int
			err := tx.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(coalesce(is_authorized, 0) != 0), 0) FROM users_info WHERE username = ?`, name).Scan(&n, &ok)
			if err != nil {
				return s.wrap("set approval", err)
			}
			if n == 0 {
				unknown = append(unknown, name)
				continue
			}
			// Approved means every row is: NativeAuthenticator reads the
			// first row, so a duplicate must not stay behind.
			before, needs := ok == n, ok < n
			if !approved {
				before, needs = ok > 0, ok > 0
			}
			c := Change{Name: name, Before: state(before), After: state(approved), Changed: needs}
			if needs {
				if _, err := tx.ExecContext(ctx, `UPDATE users_info SET is_authorized = ? WHERE username = ?`, approved, name); err != nil {
					return s.wrap("set approval", err)
				}
			}
			changes = append(changes, c)
		}
		if len(unknown) > 0 {
			known, err := namesTx(ctx, tx)
			if err != nil {
				return s.wrap("set approval", err)
			}
			return unknownUsers(unknown, known)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return changes, nil
}

// SetPassword stores hash (a bcrypt hash) as the password of every row of
// name, as a BLOB: NativeAuthenticator compares bytes, and a TEXT value
// makes the hub fail at login.
func (s *Store) SetPassword(ctx context.Context, name string, hash []byte) error {
	return s.tx(ctx, "set password", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users_info SET password = ? WHERE username = ?`, hash, name)
		if err != nil {
			return s.wrap("set password", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			known, err := namesTx(ctx, tx)
			if err != nil {
				return s.wrap("set password", err)
			}
			return unknownUsers([]string{name}, known)
		}
		return nil
	})
}

// Delete removes every row of name and returns how many there were.
func (s *Store) Delete(ctx context.Context, name string) (int64, error) {
	var n int64
	err := s.tx(ctx, "delete user", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM users_info WHERE username = ?`, name)
		if err != nil {
			return s.wrap("delete user", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}

func namesTx(ctx context.Context, tx *sql.Tx) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT DISTINCT username FROM users_info`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, rows.Err()
}

// unknownUsers is the usage error for names that match no user, with the
// close matches among known as the hint.
func unknownUsers(unknown, known []string) error {
	quoted := make([]string, len(unknown))
	for i, u := range unknown {
		quoted[i] = fmt.Sprintf("%q", u)
	}
	what := "no user " + strings.Join(quoted, ", ")
	if len(unknown) > 1 {
		what = "no users " + strings.Join(quoted, ", ")
	}
	var close []string
	for _, u := range unknown {
		for _, m := range CloseMatches(u, known, 5) {
			if !contains(close, m) {
				close = append(close, m)
			}
		}
	}
	hint := "run `fireops users list` to see every user"
	if len(close) > 0 {
		hint = "did you mean: " + strings.Join(close, ", ") + "?"
	}
	return &exitcode.Error{Code: exitcode.Usage, Hint: hint, Err: &UnknownUserError{Names: unknown, Matches: close, msg: what}}
}

// UnknownUserError says that names match no user; Matches are the close
// matches among the known names.
type UnknownUserError struct {
	// Names are the names that matched nothing.
	Names []string
	// Matches are known names close to them.
	Matches []string
	msg     string
}

// Error returns "no user "x"" or "no users "x", "y"".
func (e *UnknownUserError) Error() string { return e.msg }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
