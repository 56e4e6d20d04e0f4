package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"
)

// sqliteHeader starts every SQLite database file.
var sqliteHeader = []byte("SQLite format 3\x00")

// HostProblems checks what a job will need on this host that Validate
// leaves to the job: the source paths exist and are readable, an SQLite
// path is an SQLite database, the identity parses and matches a recipient.
// It is not part of Validate on purpose (a restore host has no sources);
// `config check` reports its problems as errors (exit 2). notes are
// warnings: a source under stack.dir that `fireops deploy` has not
// created yet, a source path or a MongoDB URI file that does not exist.
func (c *Config) HostProblems() (notes []string, err error) {
	var p problems
	missing := func(key, name string) {
		if c.Stack.Dir != "" && within(c.Stack.Dir, name) {
			notes = append(notes, fmt.Sprintf("%s: %s does not exist yet: not deployed yet: run fireops deploy (the stack folder %s is written by deploy)", key, name, c.Stack.Dir))
			return
		}
		// A warning, not an error: on a host being rebuilt from backups
		// (docs/runbook.md) config check runs before restore brings the
		// sources back.
		notes = append(notes, fmt.Sprintf("%s: %s does not exist: snapshot would fail until it does (restore it, or fix the path)", key, name))
	}
	for i, f := range c.Sources.Files {
		for j, name := range f.Paths {
			key := fmt.Sprintf("sources.files[%d].paths[%d]", i, j)
			if err := readable(name); errors.Is(err, fs.ErrNotExist) {
				missing(key, name)
			} else if err != nil {
				p.add(key, "run fireops as a user that can read it (root for the stack's files)", "%v", err)
			}
		}
	}
	for i, s := range c.Sources.SQLite {
		if s.Path == "" {
			continue
		}
		key := fmt.Sprintf("sources.sqlite[%d].path", i)
		switch err := isSQLite(s.Path); {
		case errors.Is(err, fs.ErrNotExist):
			missing(key, s.Path)
		case err != nil:
			p.add(key, "point it at the database file itself (the one the application opens)", "%v", err)
		}
	}
	if m := c.Sources.Mongo; m != nil && m.URIFile != "" && !c.WrittenByDeploy(m.URIFile) {
		// Validate lets it be missing; one deploy writes is noted by
		// pkg/deploy's CheckCoverage.
		if _, err := os.Stat(m.URIFile); errors.Is(err, fs.ErrNotExist) {
			notes = append(notes, fmt.Sprintf("sources.mongo.uri_file: %s does not exist: the mongo part of every snapshot fails until it does (write the mongodb:// URI into it, chmod 600, or fix the path)", m.URIFile))
		}
	}
	c.checkIdentity(&p)
	return notes, p.err(c.File)
}

// within reports whether name is dir or inside it.
func within(dir, name string) bool {
	rel, err := filepath.Rel(dir, name)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// readable opens name (a file or a folder) and reads from it.
func readable(name string) error {
	return inspect(name, func(f *os.File, st fs.FileInfo) error {
		var err error
		if st.IsDir() {
			_, err = f.ReadDir(1)
		} else if st.Mode().IsRegular() {
			_, err = f.Read(make([]byte, 1))
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
}

// isSQLite checks that name is a readable SQLite database file.
func isSQLite(name string) error {
	return inspect(name, func(f *os.File, st fs.FileInfo) error {
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", name)
		}
		head := make([]byte, len(sqliteHeader))
		if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head, sqliteHeader) {
			if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("%s: %w", name, err)
			}
			return fmt.Errorf("%s is not an SQLite database (no \"SQLite format 3\" header)", name)
		}
		return nil
	})
}

// inspect opens name, stats what it opened and hands both to check; the
// file is closed when check returns. The open's and the stat's errors are
// returned as they are (they name the file).
func inspect(name string, check func(f *os.File, st fs.FileInfo) error) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	return check(f, st)
}

// checkIdentity parses keys.identity_file, when it is on this host and
// Validate found it private, and checks that it decrypts for at least one
// recipient.
func (c *Config) checkIdentity(p *problems) {
	name := c.Keys.IdentityFile
	if name == "" {
		return
	}
	var tmp problems
	if !checkSecretFile(&tmp, "keys.identity_file", name, false) {
		return // missing (fine: kept offline) or reported by Validate
	}
	f, err := os.Open(name)
	if err != nil {
		p.add("keys.identity_file", "run fireops as a user that can read it", "%v", err)
		return
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		p.add("keys.identity_file", "point it at the identity.txt written by `fireops init` (AGE-SECRET-KEY-1...)", "%s is not an age identity file: %v", name, err)
		return
	}
	rcps, err := c.Recipients()
	if err != nil || len(rcps) == 0 {
		return // reported by Validate, or nothing to match
	}
	want := map[string]bool{}
	for _, r := range rcps {
		want[r.String()] = true
	}
	for _, id := range ids {
		if x, ok := id.(*age.X25519Identity); ok && want[x.Recipient().String()] {
			return
		}
	}
	p.add("keys.identity_file", "add its public key (age-keygen -y "+name+") to keys.recipients, or point identity_file at the matching identity",
		"%s matches none of keys.recipients: restore could not decrypt these snapshots with it", name)
}
