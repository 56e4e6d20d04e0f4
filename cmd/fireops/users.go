package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/users"
)

func (a *app) usersCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "users",
		Short: "Administer hub users: list, approve, reject, admin, reset-password, delete",
		Long: `users administers the JupyterHub users of the stack. New users sign up on the
hub's sign-up page (NativeAuthenticator) and wait until an admin approves them.

Approval and passwords live in NativeAuthenticator's users_info table in the
hub's database (hub.db_path, or hub.db_file in the volume hub.db_volume);
fireops writes it directly, in short transactions that are safe while the hub
runs. The admin flag and the hub users themselves go through the hub's REST
API (hub.api_url, with an admin token from hub.token_file).

approve and reject SET the state (a second approve changes nothing), unlike
the hub's /hub/authorize page, where a click toggles it.

On a stack that fireops deploy runs (stack.dir holds its compose.yaml),
approve also gives each user a MongoDB database and user of their own, and
delete drops that MongoDB user (never the database): see docs/users.md.`,
	}
	cmd.AddCommand(a.usersListCommand(), a.usersApproveCommand(true), a.usersApproveCommand(false),
		a.usersAdminCommand(), a.usersResetPasswordCommand(), a.usersDeleteCommand())
	return cmd
}

// usersManager builds the users.Manager the config describes.
func (a *app) usersManager() (*users.Manager, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	tok, err := users.ReadToken(cfg.Hub.TokenFile)
	if err != nil {
		return nil, err
	}
	hub, err := users.NewHub(cfg.Hub.APIURL, tok, nil)
	if err != nil {
		return nil, err
	}
	dbPath := func(ctx context.Context) (string, error) {
		return users.DBPath(ctx, cfg.Hub, users.DockerVolumes{})
	}
	return users.NewManager(hub, dbPath, 0), nil
}

// withUsers runs fn with a Manager and closes it afterwards.
func (a *app) withUsers(fn func(*users.Manager) error) error {
	m, err := a.usersManager()
	if err != nil {
		return err
	}
	defer m.Close()
	return fn(m)
}

// withMongo gives m the users' MongoDB accounts of the deployed stack
// (none without one, or with noMongo) and runs fn.
func (a *app) withMongo(m *users.Manager, noMongo bool, fn func() error) error {
	if noMongo {
		return fn()
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	acc, done, err := users.StackMongo(cfg)
	if err != nil {
		return err
	}
	defer done()
	m.SetMongo(acc)
	return fn()
}

// printMongo prints what became of a user's MongoDB account.
func printMongo(w io.Writer, acc *users.MongoAccount) {
	switch acc.Action {
	case users.MongoKept:
		fmt.Fprintf(w, "%s: MongoDB database and user %s: already there\n", acc.Name, acc.Database)
	case users.MongoRemoved, users.MongoAbsent:
		if acc.Action == users.MongoRemoved {
			fmt.Fprintf(w, "%s: dropped MongoDB user %s\n", acc.Name, acc.Database)
		} else {
			fmt.Fprintf(w, "%s: no MongoDB user %s to drop\n", acc.Name, acc.Database)
		}
	case users.MongoCreated:
		if acc.DatabaseKept {
			fmt.Fprintf(w, "%s: MongoDB user %s: created on the existing database %s, its data kept (URI in %s)\n", acc.Name, acc.Database, acc.Database, acc.URIFile)
			return
		}
		fallthrough
	default:
		fmt.Fprintf(w, "%s: MongoDB database and user %s: %s (URI in %s)\n", acc.Name, acc.Database, acc.Action, acc.URIFile)
	}
}

func (a *app) usersListCommand() *cobra.Command {
	var pending, approved, admins bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List sign-ups and hub users with their state",
		Long: `list merges NativeAuthenticator's sign-ups with the hub's users: name, state
(pending, approved, or "hub only" for a hub user without a sign-up), admin,
two-factor authentication, whether a server runs, last activity and email.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := users.All
			n := 0
			for _, c := range []struct {
				set bool
				f   users.Filter
			}{{pending, users.Pending}, {approved, users.Approved}, {admins, users.Admins}} {
				if c.set {
					f = c.f
					n++
				}
			}
			if n > 1 {
				return exitcode.Usagef("use one of them", "--pending, --approved and --admins exclude each other")
			}
			return a.withUsers(func(m *users.Manager) error {
				l, err := m.List(cmd.Context(), f)
				if err != nil {
					return err
				}
				for _, w := range l.Warnings {
					fmt.Fprintf(a.stderr, "fireops: warning: %s\n", w)
				}
				if a.jsonOut {
					return a.printJSON(l)
				}
				tw := newTable(a.stdout, 0, 4, 2)
				fmt.Fprintln(tw, "NAME\tSTATE\tADMIN\t2FA\tSERVER\tLAST ACTIVITY\tEMAIL")
				for _, u := range l.Users {
					last := "never"
					if u.LastActivity != nil {
						last = u.LastActivity.UTC().Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", u.Name, u.State(), yesNo(u.Admin), yesNo(u.Has2FA),
						map[bool]string{true: "running", false: "-"}[u.ServerRunning], last, orDash(u.Email))
				}
				return tw.Flush()
			})
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&pending, "pending", false, "only sign-ups waiting for approval")
	fl.BoolVar(&approved, "approved", false, "only approved sign-ups")
	fl.BoolVar(&admins, "admins", false, "only hub admins")
	return cmd
}

func (a *app) usersApproveCommand(approve bool) *cobra.Command {
	var noMongo, reuse bool
	use, short, long := "approve [flags] NAME...", "Approve sign-ups (set, never toggle) and give them their MongoDB database",
		`approve lets the named users log in. It sets the approval; a user who is
already approved stays approved. All names are checked first: when one is
unknown nothing changes.

On a stack that fireops deploy runs, each user then gets a MongoDB database
and a MongoDB user of their own (user_<escaped name>, readWrite on that
database only); its URI goes into stack.dir/secrets/mongo-users/, from where
the hub hands it to the user's server as MONGODB_URI. Running approve again
creates what is missing (a MongoDB user lost with a server rebuild, a lost
URI file), sets the MongoDB user's password and roles again from the URI
file, and changes nothing else. --no-mongo skips this step.

A database that exists without its MongoDB user is given back to a user
the hub knows as approved (approve run again, a server rebuilt from
snapshots). It is refused, and nothing changes (exit 2), when a delete
marked it as a deleted user's, or when the user was not approved before
and has no URI file: it may hold the data of a deleted user of the same
name. The error names the database and how to archive and drop it;
--reuse-database gives it to the user all the same.`
	if !approve {
		use, short, long = "reject [flags] NAME...", "Withdraw approval of sign-ups (set, never toggle)",
			`reject withdraws the approval of the named users: they can no longer log
in. Their sign-up stays (use delete to remove it). All names are checked
first: when one is unknown nothing changes.`
	}
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if noMongo && reuse {
				return exitcode.Usagef("use one of them", "--no-mongo and --reuse-database exclude each other")
			}
			return a.withUsers(func(m *users.Manager) error {
				if !approve {
					changes, err := m.SetApproved(cmd.Context(), args, false)
					if err != nil {
						return err
					}
					if a.jsonOut {
						return a.printJSON(map[string]any{"changes": changes})
					}
					for _, c := range changes {
						printChange(a.stdout, c)
					}
					return nil
				}
				return a.withMongo(m, noMongo, func() error {
					changes, accounts, err := m.Approve(cmd.Context(), args, users.ApproveOptions{ReuseDatabase: reuse})
					if changes == nil && err != nil {
						return err
					}
					if a.jsonOut {
						if perr := a.printJSON(map[string]any{"changes": changes, "mongo": accounts}); perr != nil {
							return perr
						}
						return err
					}
					for _, c := range changes {
						printChange(a.stdout, c)
					}
					for _, acc := range accounts {
						printMongo(a.stdout, acc)
					}
					return err
				})
			})
		},
	}
	if approve {
		c.Flags().BoolVar(&noMongo, "no-mongo", false, "only approve: create no MongoDB database and user")
		c.Flags().BoolVar(&reuse, "reuse-database", false, "give a user a database that exists without its MongoDB user, even one a deleted user of that name left")
	}
	return c
}

func (a *app) usersAdminCommand() *cobra.Command {
	var revoke bool
	cmd := &cobra.Command{
		Use:   "admin [flags] NAME",
		Short: "Grant (or with --revoke, take away) hub admin rights",
		Long: `admin sets the hub's admin flag of NAME through the REST API. An approved
sign-up who has never logged in has no hub user yet: granting creates it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withUsers(func(m *users.Manager) error {
				res, err := m.SetAdmin(cmd.Context(), args[0], !revoke)
				if err != nil {
					return err
				}
				if a.jsonOut {
					return a.printJSON(res)
				}
				printChange(a.stdout, res.Change)
				if res.Created {
					fmt.Fprintf(a.stdout, "%s: created the hub user\n", res.Name)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&revoke, "revoke", false, "take admin rights away")
	return cmd
}

func (a *app) usersResetPasswordCommand() *cobra.Command {
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "reset-password [flags] NAME",
		Short: "Set a new password for a sign-up",
		Long: `reset-password stores a new password for NAME, as a bcrypt hash that
NativeAuthenticator accepts. The password comes from:

  --password-stdin   the first line of standard input
  a terminal         a prompt, twice (leave it empty to generate one)
  otherwise          fireops generates a strong one and prints it once

Passwords over 72 bytes are refused (bcrypt ignores the rest). The password
is never taken from a flag: flags end up in shell history and ps.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			return a.withUsers(func(m *users.Manager) error {
				ctx := cmd.Context()
				if err := m.RequireSignup(ctx, name); err != nil {
					return err
				}
				pw, generated, err := a.newPassword(name, fromStdin)
				if err != nil {
					return err
				}
				if err := m.ResetPassword(ctx, name, []byte(pw)); err != nil {
					return err
				}
				if a.jsonOut {
					out := map[string]any{"name": name, "generated": generated}
					if generated {
						out["password"] = pw
					}
					return a.printJSON(out)
				}
				fmt.Fprintf(a.stdout, "%s: password reset\n", name)
				if generated {
					fmt.Fprintf(a.stdout, "new password (shown once): %s\n", pw)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the new password from standard input")
	return cmd
}

// newPassword gets the new password: from stdin, from a terminal prompt, or
// generated. generated says it must be shown to the admin.
func (a *app) newPassword(name string, fromStdin bool) (pw string, generated bool, err error) {
	if fromStdin {
		r := bufio.NewReader(io.LimitReader(a.stdin, 4096))
		line, err := r.ReadString('\n')
		if err != nil && err != io.EOF {
			return "", false, fmt.Errorf("read password from stdin: %w", err)
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			return "", false, exitcode.Usagef("pipe the password in, e.g. printf '%s\\n' \"$PW\" | fireops users reset-password NAME --password-stdin",
				"no password on stdin")
		}
		return line, false, users.CheckPassword([]byte(line))
	}
	if fd, ok := a.terminal(); ok {
		fmt.Fprintf(a.stderr, "New password for %s (empty: generate one): ", name)
		p1, err := term.ReadPassword(fd)
		fmt.Fprintln(a.stderr)
		if err != nil {
			return "", false, fmt.Errorf("read password: %w", err)
		}
		if len(p1) > 0 {
			if err := users.CheckPassword(p1); err != nil {
				return "", false, err
			}
			fmt.Fprintf(a.stderr, "Repeat it: ")
			p2, err := term.ReadPassword(fd)
			fmt.Fprintln(a.stderr)
			if err != nil {
				return "", false, fmt.Errorf("read password: %w", err)
			}
			if string(p1) != string(p2) {
				return "", false, exitcode.Usagef("run the command again", "the two passwords differ; nothing was changed")
			}
			return string(p1), false, nil
		}
	}
	p, err := users.GeneratePassword()
	return p, true, err
}

// terminal returns the file descriptor of stdin when it is a terminal.
func (a *app) terminal() (int, bool) {
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	return int(f.Fd()), true
}

func (a *app) usersDeleteCommand() *cobra.Command {
	var yes, noMongo bool
	cmd := &cobra.Command{
		Use:   "delete [flags] NAME",
		Short: "Delete a user: the hub user, the sign-up, the stopped server containers and the MongoDB user (never the volume or the database)",
		Long: `delete removes the hub user of NAME and NAME's sign-up in users_info. The
user's Docker volume with their files is kept; the command says how to
snapshot and remove it.

On a stack that fireops deploy runs, it first looks at NAME's server
containers (jupyter-<escaped name>, and jupyter-<escaped name>--<server>
for named servers): while one runs it refuses and changes nothing (stop
the server first, on the hub's admin page); the stopped ones, which the hub
keeps and which mount the volume, it removes. Before that it drops NAME's
MongoDB user and URI file; their MongoDB database is kept, marked as a
deleted user's (a later sign-up under the same name does not get it
without approve --reuse-database), and the command says how to snapshot
and drop it. --no-mongo leaves the MongoDB user alone.

Without --yes it asks for the name on a terminal, and refuses otherwise.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			return a.withUsers(func(m *users.Manager) error {
				cfg, err := a.loadConfig()
				if err != nil {
					return err
				}
				ctrs, done, err := users.StackContainers(cfg)
				if err != nil {
					return err
				}
				defer done()
				m.SetContainers(ctrs)
				return a.withMongo(m, noMongo, func() error { return a.deleteUser(cmd.Context(), m, name, yes, ctrs != nil) })
			})
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&noMongo, "no-mongo", false, "leave the user's MongoDB user alone")
	return cmd
}

// deleteUser is delete's work: confirm, delete, say what was kept.
// containers says the user's server containers were looked after.
func (a *app) deleteUser(ctx context.Context, m *users.Manager, name string, yes, containers bool) error {
	if !yes {
		if err := m.Exists(ctx, name); err != nil {
			return err
		}
		if err := a.confirmDelete(name); err != nil {
			return err
		}
	}
	res, err := m.Delete(ctx, name)
	if err != nil {
		return err
	}
	if a.jsonOut {
		return a.printJSON(res)
	}
	var what []string
	if res.HubUser {
		what = append(what, "the hub user")
	}
	if res.Rows > 0 {
		what = append(what, fmt.Sprintf("%d users_info row(s)", res.Rows))
	}
	if len(what) == 0 {
		what = append(what, "nothing left to delete")
	}
	fmt.Fprintf(a.stdout, "%s: deleted %s\n", name, strings.Join(what, " and "))
	for _, c := range res.Containers {
		fmt.Fprintf(a.stdout, "%s: removed stopped server container %s\n", name, c)
	}
	fmt.Fprintf(a.stdout, "%s: kept volume %s (the user's files); to archive and remove it:\n", name, res.Volume)
	if !containers {
		fmt.Fprintf(a.stdout, "  (first remove the user's stopped server containers, which mount it: docker rm %s%s)\n", users.ServerContainerPrefix, users.EscapeUsername(name))
	}
	fmt.Fprintf(a.stdout, "  fireops snapshot --only volume:%s && docker volume rm %s\n", res.Volume, res.Volume)
	if acc := res.Mongo; acc != nil {
		printMongo(a.stdout, acc)
		if acc.DatabaseKept {
			fmt.Fprintf(a.stdout, "%s: kept MongoDB database %s (the user's data, marked as a deleted user's); to archive and drop it:\n", name, acc.Database)
			fmt.Fprintf(a.stdout, "  %s\n", users.DropDatabaseCommand(m.MongoAdminURIFile(), acc.Database))
		}
	}
	return nil
}

// confirmDelete asks for the user's name on a terminal.
func (a *app) confirmDelete(name string) error {
	if _, ok := a.terminal(); !ok {
		return exitcode.Usagef("add --yes to delete without asking", "refusing to delete %s without confirmation: stdin is not a terminal", name)
	}
	fmt.Fprintf(a.stderr, "Delete hub user and sign-up of %s? Type the name to confirm: ", name)
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return fmt.Errorf("read confirmation: %w", err)
	}
	if strings.TrimSpace(line) != name {
		return exitcode.Usagef("type the name exactly, or use --yes", "not confirmed; nothing was deleted")
	}
	return nil
}

// printChange prints "name: before -> after" or "name: already after".
func printChange(w io.Writer, c users.Change) {
	if c.Changed {
		fmt.Fprintf(w, "%s: %s -> %s\n", c.Name, c.Before, c.After)
		return
	}
	fmt.Fprintf(w, "%s: already %s\n", c.Name, c.After)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
