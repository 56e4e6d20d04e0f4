// Package users administers the JupyterHub users of the stack: the sign-ups
// that NativeAuthenticator keeps in its users_info table inside the hub's
// SQLite database, and the hub's own users behind its REST API.
//
// Approval and passwords live only in users_info, and NativeAuthenticator's
// web page for approval toggles and refuses API tokens, so this package
// writes that table itself: with a busy timeout, in short transactions,
// safe while the hub runs. Everything the hub owns (the admin flag, the
// hub user itself) goes through the REST API, never through the database.
//
// Each approved user also gets a MongoDB account of their own (mongo.go):
// a database, a MongoDB user with readWrite on it alone, and a URI file in
// the stack's secrets folder that the hub hands to the user's server.
//
// This package must never toggle a state (approve and reject set it), never
// store a password hash as TEXT (the hub then fails at login), and never
// delete a user's Docker volume or drop a user's MongoDB database.
package users

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/firetech/fireops/pkg/exitcode"
)

// Manager combines the hub database and the REST API. The database is
// opened on first use, so commands that need only the API (an admin change
// of an existing hub user) work where the database cannot be read.
type Manager struct {
	hub    *Hub
	dbPath func(context.Context) (string, error)
	busy   time.Duration
	store  *Store
	mongo  *MongoAccounts
	// containers are the users' server containers (nil: not managed).
	containers ServerContainers
}

// SetMongo makes approve and delete manage the users' MongoDB accounts
// with a (nil: they do not).
func (m *Manager) SetMongo(a *MongoAccounts) { m.mongo = a }

// SetContainers makes delete remove the user's stopped server containers
// through c (nil: it leaves them).
func (m *Manager) SetContainers(c ServerContainers) { m.containers = c }

// MongoAdminURIFile returns the root URI file of the MongoAccounts given to
// SetMongo, or "".
func (m *Manager) MongoAdminURIFile() string {
	if m.mongo == nil {
		return ""
	}
	return m.mongo.AdminURIFile
}

// ApproveOptions configure Approve.
type ApproveOptions struct {
	// ReuseDatabase lets a user's new MongoDB user have a database that
	// exists without it, even a deleted user's (approve
	// --reuse-database): see EnsureOptions.
	ReuseDatabase bool
}

// Approve approves the named users (SetApproved) and, with SetMongo, then
// makes sure each has their MongoDB account (MongoAccounts.Ensure), in
// order, stopping at the first failure.
//
// Before it changes anything it checks every name: an unknown one is a
// usage error, and so is a database that exists without its MongoDB user
// and may be someone else's (MongoAccounts.Check: a deleted user's, or one
// of a user who was not approved before this call), unless
// opts.ReuseDatabase. A user who was approved already (approve run again,
// a server rebuilt from snapshots) gets their database back.
//
// A failure after the approval leaves it: the error says to run approve
// again, which only completes the accounts.
func (m *Manager) Approve(ctx context.Context, names []string, opts ApproveOptions) ([]Change, []*MongoAccount, error) {
	if len(names) == 0 {
		return nil, nil, exitcode.Usagef("name at least one user", "no user given")
	}
	names = dedupe(names)
	s, err := m.Store(ctx)
	if err != nil {
		return nil, nil, err
	}
	ensure := map[string]EnsureOptions{}
	if m.mongo != nil {
		var unknown []string
		for _, n := range names {
			rows, err := s.Find(ctx, n)
			if err != nil {
				return nil, nil, err
			}
			if len(rows) == 0 {
				unknown = append(unknown, n)
				continue
			}
			approved := true
			for _, r := range rows {
				approved = approved && r.Approved
			}
			ensure[n] = EnsureOptions{NewApproval: !approved, ReuseDatabase: opts.ReuseDatabase}
		}
		if len(unknown) > 0 {
			known, err := s.Names(ctx)
			if err != nil {
				return nil, nil, err
			}
			return nil, nil, unknownUsers(unknown, known)
		}
		var refused []error
		for _, n := range names {
			if err := m.mongo.Check(ctx, n, ensure[n]); err != nil {
				var inh *InheritedDatabaseError
				if !errors.As(err, &inh) {
					return nil, nil, exitcode.New(exitcode.Code(err), fmt.Errorf("MongoDB account of %s (nothing was changed): %w", n, err), exitcode.Hint(err))
				}
				refused = append(refused, err)
			}
		}
		switch {
		case len(refused) == 1:
			return nil, nil, refused[0]
		case len(refused) > 1:
			var dbs []string
			for _, err := range refused {
				var inh *InheritedDatabaseError
				errors.As(err, &inh)
				dbs = append(dbs, inh.Name+" ("+inh.Database+")")
			}
			return nil, nil, exitcode.New(exitcode.Usage,
				fmt.Errorf("MongoDB databases exist without their MongoDB users and may hold deleted users' data: %s", strings.Join(dbs, ", ")),
				"nothing was changed; approve them one at a time to see whose data each holds (docs/users.md), or add --reuse-database if every one is that user's own")
		}
	}
	changes, err := s.SetApproved(ctx, names, true)
	if err != nil {
		return nil, nil, err
	}
	if m.mongo == nil {
		return changes, nil, nil
	}
	var out []*MongoAccount
	for _, n := range names {
		acc, err := m.mongo.Ensure(ctx, n, ensure[n])
		if err != nil {
			hint := "the approval is done; run `fireops users approve " + n + "` again to create the MongoDB account"
			if h := exitcode.Hint(err); h != "" {
				hint = h + "; then run `fireops users approve " + n + "` again"
			}
			return changes, out, exitcode.New(exitcode.Failure, fmt.Errorf("MongoDB account of %s: %w", n, err), hint)
		}
		out = append(out, acc)
	}
	return changes, out, nil
}

// NewManager returns a Manager that talks to hub and finds the database
// with dbPath when it first needs it. busy is the database busy timeout;
// 0 means DefaultBusyTimeout.
func NewManager(hub *Hub, dbPath func(context.Context) (string, error), busy time.Duration) *Manager {
	return &Manager{hub: hub, dbPath: dbPath, busy: busy}
}

// Close closes the database when it was opened.
func (m *Manager) Close() error {
	if m.store == nil {
		return nil
	}
	return m.store.Close()
}

// Store opens (once) and returns the hub database.
func (m *Manager) Store(ctx context.Context) (*Store, error) {
	if m.store != nil {
		return m.store, nil
	}
	p, err := m.dbPath(ctx)
	if err != nil {
		return nil, err
	}
	s, err := OpenStore(ctx, p, m.busy)
	if err != nil {
		return nil, err
	}
	m.store = s
	return s, nil
}

// User is one user as `fireops users list` shows it: NativeAuthenticator's
// row merged with the hub's user.
type User struct {
	// Name is the username.
	Name string `json:"name"`
	// Email is the address given at sign-up, or "".
	Email string `json:"email"`
	// SignedUp says the user has a NativeAuthenticator row (users_info).
	SignedUp bool `json:"signed_up"`
	// Approved says the user may log in (is_authorized).
	Approved bool `json:"approved"`
	// Admin is the hub's admin flag.
	Admin bool `json:"admin"`
	// Has2FA says the user chose two-factor authentication at sign-up.
	Has2FA bool `json:"has_2fa"`
	// InHub says the hub has a user of that name (it gets one at the first
	// login, through the API, or from admin_users).
	InHub bool `json:"in_hub"`
	// ServerRunning says one of the user's servers is active.
	ServerRunning bool `json:"server_running"`
	// LastActivity is the last time the hub saw the user, if ever.
	LastActivity *time.Time `json:"last_activity"`
	// Volume is the name of the user's Docker volume (it may not exist yet).
	Volume string `json:"volume"`
}

// State is "pending", "approved", or "hub only" for a hub user without a
// NativeAuthenticator row.
func (u User) State() string {
	switch {
	case !u.SignedUp:
		return "hub only"
	case u.Approved:
		return "approved"
	}
	return "pending"
}

// Filter selects users in List.
type Filter int

// The filters of `fireops users list`.
const (
	// All lists every user.
	All Filter = iota
	// Pending lists sign-ups not approved yet.
	Pending
	// Approved lists approved sign-ups.
	Approved
	// Admins lists hub admins.
	Admins
)

// Listing is the result of List.
type Listing struct {
	// Users are sorted by name.
	Users []User `json:"users"`
	// Warnings are problems worth a look (duplicate rows in users_info).
	Warnings []string `json:"warnings,omitempty"`
}

// List merges users_info and the hub's users, keeping those f selects.
func (m *Manager) List(ctx context.Context, f Filter) (*Listing, error) {
	s, err := m.Store(ctx)
	if err != nil {
		return nil, err
	}
	infos, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	hubUsers, err := m.hub.Users(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]*User{}
	rows := map[string]int{}
	var res Listing
	for _, in := range infos {
		rows[in.Name]++
		if u, ok := byName[in.Name]; ok {
			// Approved only when every row is (NativeAuthenticator reads
			// one of them); the warning below says there are several.
			u.Approved = u.Approved && in.Approved
			continue
		}
		byName[in.Name] = &User{Name: in.Name, Email: in.Email, SignedUp: true, Approved: in.Approved, Has2FA: in.Has2FA}
	}
	for name, n := range rows {
		if n > 1 {
			res.Warnings = append(res.Warnings, fmt.Sprintf("user %q has %d rows in users_info (NativeAuthenticator reads the first); approve, reject and reset-password change all of them", name, n))
		}
	}
	sort.Strings(res.Warnings)
	for _, hu := range hubUsers {
		u, ok := byName[hu.Name]
		if !ok {
			u = &User{Name: hu.Name}
			byName[hu.Name] = u
		}
		u.InHub = true
		u.Admin = hu.Admin
		u.ServerRunning = hu.Running()
		u.LastActivity = hu.LastActivity
	}
	for _, u := range byName {
		u.Volume = VolumeName(u.Name)
		keep := f == All ||
			f == Pending && u.SignedUp && !u.Approved ||
			f == Approved && u.SignedUp && u.Approved ||
			f == Admins && u.Admin
		if keep {
			res.Users = append(res.Users, *u)
		}
	}
	sort.Slice(res.Users, func(i, j int) bool { return res.Users[i].Name < res.Users[j].Name })
	if res.Users == nil {
		res.Users = []User{}
	}
	return &res, nil
}

// SetApproved approves (or, with approved false, rejects) the named users:
// it sets the state, never toggles it, all in one transaction. An unknown
// name changes nothing and is a usage error that lists close matches.
func (m *Manager) SetApproved(ctx context.Context, names []string, approved bool) ([]Change, error) {
	if len(names) == 0 {
		return nil, exitcode.Usagef("name at least one user", "no user given")
	}
	s, err := m.Store(ctx)
	if err != nil {
		return nil, err
	}
	return s.SetApproved(ctx, dedupe(names), approved)
}

// AdminResult says what SetAdmin did.
type AdminResult struct {
	Change
	// Created says the hub user did not exist and was created (a sign-up
	// who never logged in).
	Created bool `json:"created"`
}

// SetAdmin grants (or revokes) the hub's admin flag through the REST API.
// A user who signed up and was approved but never logged in has no hub
// user yet: granting creates one. Granting to a sign-up that is not
// approved is refused.
func (m *Manager) SetAdmin(ctx context.Context, name string, admin bool) (*AdminResult, error) {
	state := func(v bool) string {
		if v {
			return "admin"
		}
		return "not admin"
	}
	res := &AdminResult{Change: Change{Name: name, After: state(admin)}}
	hu, err := m.hub.User(ctx, name)
	switch {
	case err == nil:
		res.Before = state(hu.Admin)
		if hu.Admin == admin {
			return res, nil
		}
		if _, err := m.hub.SetAdmin(ctx, name, admin); err != nil {
			return nil, fmt.Errorf("set admin flag of %s: %w", name, err)
		}
		res.Changed = true
		return res, nil
	case !errors.Is(err, ErrNoHubUser):
		return nil, err
	}
	// No hub user: the name must be a NativeAuthenticator sign-up.
	_, rows, err := m.signups(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, m.unknown(ctx, name)
	}
	res.Before = state(false)
	if !admin {
		return res, nil
	}
	if !rows[0].Approved {
		return nil, exitcode.Usagef("approve first: fireops users approve "+name,
			"%s signed up but is not approved", name)
	}
	if _, err := m.hub.CreateUser(ctx, name, true); err != nil {
		return nil, fmt.Errorf("create hub user %s as admin: %w", name, err)
	}
	res.Changed, res.Created = true, true
	return res, nil
}

// ResetPassword stores the bcrypt hash of pw as the password of name.
func (m *Manager) ResetPassword(ctx context.Context, name string, pw []byte) error {
	hash, err := HashPassword(pw)
	if err != nil {
		return err
	}
	s, err := m.Store(ctx)
	if err != nil {
		return err
	}
	return s.SetPassword(ctx, name, hash)
}

// RequireSignup returns an unknown-user error (with close matches) unless
// name has a users_info row.
func (m *Manager) RequireSignup(ctx context.Context, name string) error {
	_, rows, err := m.signups(ctx, name)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return m.unknown(ctx, name)
	}
	return nil
}

// Exists reports an unknown-user error (with close matches) unless name has
// a users_info row or a hub user.
func (m *Manager) Exists(ctx context.Context, name string) error {
	_, rows, err := m.signups(ctx, name)
	if err != nil {
		return err
	}
	if len(rows) > 0 {
		return nil
	}
	if _, err := m.hub.User(ctx, name); err == nil {
		return nil
	} else if !errors.Is(err, ErrNoHubUser) {
		return err
	}
	return m.unknown(ctx, name)
}

// DeleteResult says what Delete removed and what it kept.
type DeleteResult struct {
	// Name is the username.
	Name string `json:"name"`
	// Rows is the number of users_info rows removed.
	Rows int64 `json:"rows_deleted"`
	// HubUser says the hub user was deleted.
	HubUser bool `json:"hub_user_deleted"`
	// Volume is the user's Docker volume, which Delete never removes.
	Volume string `json:"volume_kept"`
	// Mongo says what became of the user's MongoDB account (nil without
	// SetMongo); their database is kept.
	Mongo *MongoAccount `json:"mongo,omitempty"`
	// Containers are the user's stopped server containers Delete removed
	// (none without SetContainers).
	Containers []string `json:"containers_removed,omitempty"`
}

// Delete removes the hub user (REST API) and then the users_info rows of
// name. It never touches the user's volume. The database's write lock is
// tried before the hub is changed, so a locked database changes nothing;
// if the database write still fails after the hub user was deleted, the
// error says so and a second run finishes the job.
//
// With SetContainers it first lists the user's server containers: while
// one runs it refuses (exit code 2, nothing changed: the server must be
// stopped first); the stopped ones it removes before the hub user goes
// (the hub keeps them, and they mount the volume, pin the notebook image
// and would be a later namesake's server). With SetMongo it drops the
// user's MongoDB user and URI file before that (never their database): a
// failure there changes nothing else, and a second run finds the MongoDB
// user absent.
func (m *Manager) Delete(ctx context.Context, name string) (*DeleteResult, error) {
	s, rows, err := m.signups(ctx, name)
	if err != nil {
		return nil, err
	}
	inHub := true
	if _, err := m.hub.User(ctx, name); errors.Is(err, ErrNoHubUser) {
		inHub = false
	} else if err != nil {
		return nil, err
	}
	if len(rows) == 0 && !inHub {
		return nil, m.unknown(ctx, name)
	}
	if err := s.CheckWritable(ctx); err != nil {
		return nil, err
	}
	var ctrs []ServerContainer
	if m.containers != nil {
		if ctrs, err = m.containers.List(ctx, name); err != nil {
			return nil, exitcode.New(exitcode.Code(err), fmt.Errorf("%s (nothing was deleted): %w", name, err), exitcode.Hint(err))
		}
		if err := runningServers(name, ctrs); err != nil {
			return nil, err
		}
	}
	res := &DeleteResult{Name: name, Volume: VolumeName(name)}
	if m.mongo != nil {
		acc, err := m.mongo.Remove(ctx, name)
		if err != nil {
			what := "nothing was deleted"
			if acc != nil {
				what = "the hub user and the sign-up were not deleted"
			}
			return nil, exitcode.New(exitcode.Code(err), fmt.Errorf("MongoDB account of %s (%s): %w", name, what, err),
				firstHint(err, "run `fireops users delete "+name+" --yes` again once MongoDB answers"))
		}
		res.Mongo = acc
	}
	for _, c := range ctrs {
		if err := m.containers.Remove(ctx, c); err != nil {
			return nil, exitcode.New(exitcode.Failure, fmt.Errorf("%s: %w (the hub user and the sign-up were not deleted)", name, err),
				"if "+name+"'s server was started again, stop it; then run `fireops users delete "+name+" --yes` again")
		}
		res.Containers = append(res.Containers, c.Name)
	}
	if inHub {
		err := m.hub.DeleteUser(ctx, name)
		if err != nil && !errors.Is(err, ErrNoHubUser) {
			return nil, fmt.Errorf("delete hub user %s: %w", name, err)
		}
		res.HubUser = err == nil
	}
	// NativeAuthenticator's own delete_user hook may already have removed
	// the rows; the DELETE below is then a no-op.
	n, err := s.Delete(ctx, name)
	if err != nil {
		if res.HubUser {
			return nil, exitcode.New(exitcode.Code(err), fmt.Errorf("hub user %s was deleted, but its users_info rows were not: %w", name, err),
				"run `fireops users delete "+name+" --yes` again to remove the rest")
		}
		return nil, err
	}
	res.Rows = n
	return res, nil
}

// runningServers is Delete's refusal while one of ctrs runs, or nil.
func runningServers(name string, ctrs []ServerContainer) error {
	var running []string
	for _, c := range ctrs {
		if !c.Stopped() {
			running = append(running, c.Name)
		}
	}
	if len(running) == 0 {
		return nil
	}
	return exitcode.Usagef("stop the server first (the hub's admin page: Stop Server, or `docker stop "+strings.Join(running, " ")+"`), then run delete again",
		"%s's server is running (container %s): nothing was deleted", name, strings.Join(running, ", "))
}

// firstHint returns err's hint, or def without one.
func firstHint(err error, def string) string {
	if h := exitcode.Hint(err); h != "" {
		return h
	}
	return def
}

// signups opens the database (once) and returns it with the users_info
// rows of name.
func (m *Manager) signups(ctx context.Context, name string) (*Store, []Info, error) {
	s, err := m.Store(ctx)
	if err != nil {
		return nil, nil, err
	}
	rows, err := s.Find(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	return s, rows, nil
}

// unknown is the unknown-user error for name, with close matches from
// users_info and the hub (when reachable).
func (m *Manager) unknown(ctx context.Context, name string) error {
	var known []string
	if m.store != nil {
		if names, err := m.store.Names(ctx); err == nil {
			known = append(known, names...)
		}
	}
	if hus, err := m.hub.Users(ctx); err == nil {
		for _, hu := range hus {
			if !contains(known, hu.Name) {
				known = append(known, hu.Name)
			}
		}
	}
	return unknownUsers([]string{name}, known)
}

func dedupe(names []string) []string {
	var out []string
	for _, n := range names {
		if !contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
