package deploy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/firetech/fireops/internal/mongotest"
	"github.com/firetech/fireops/internal/testenv"
	mongosrc "github.com/firetech/fireops/pkg/source/mongo"
)

// The test MongoDB (FerretDB) checks no privileges, so fireops-backup's
// roles cannot be tried there. Instead, TestBackupUserPrivileges records
// every command fireops' snapshot, restore (next to the data, and over it
// with --drop) and restore-test send to the server, and checks each
// against what the roles grant, written from MongoDB's manual ("Built-In
// Roles": backup, restore; "Privilege Actions"; the required access of
// each command). A command fireops starts to send that this model does
// not know fails the test, so that the roles are reviewed with it.

// grantedActions are the actions of backup, restore and fireopsRestore on
// the databases fireops reads and writes (not admin, local, config).
var grantedActions = func() map[string]bool {
	g := map[string]bool{}
	// backup: listDatabases on the cluster; listCollections, listIndexes
	// and find on every database and non-system collection.
	for _, a := range []string{"listDatabases", "listCollections", "listIndexes", "find"} {
		g[a] = true
	}
	// restore, on every non-system collection.
	for _, a := range []string{"bypassDocumentValidation", "collMod", "convertToCapped", "createCollection",
		"createIndex", "dropCollection", "insert"} {
		g[a] = true
	}
	for _, a := range mongoRestoreActions {
		g[a] = true
	}
	return g
}()

// mongoCommand is one command a client sent: its name, its database and
// the whole command document.
type mongoCommand struct {
	name, db string
	doc      bson.Raw
}

// requiredActions returns the actions cmd needs and the databases it acts
// on; known is false for a command the model does not know.
func requiredActions(c mongoCommand) (actions, dbs []string, known bool) {
	str := func(k string) string {
		v, _ := c.doc.Lookup(k).StringValueOK()
		return v
	}
	dbOf := func(ns string) string { d, _, _ := strings.Cut(ns, "."); return d }
	switch c.name {
	case "hello", "isMaster", "ismaster", "buildInfo", "buildinfo", "ping", "endSessions",
		"saslStart", "saslContinue", "getMore", "killCursors":
		// No privilege (getMore and killCursors: the client's own cursors).
		return nil, nil, true
	case "listDatabases":
		return []string{"listDatabases"}, nil, true
	case "listCollections":
		return []string{"listCollections"}, []string{c.db}, true
	case "listIndexes":
		return []string{"listIndexes"}, []string{c.db}, true
	case "find", "count", "aggregate":
		return []string{"find"}, []string{c.db}, true
	case "create":
		a := []string{"createCollection"}
		if str("viewOn") != "" {
			a = append(a, "find") // on the view's source
		}
		return a, []string{c.db}, true
	case "createIndexes":
		return []string{"createIndex"}, []string{c.db}, true
	case "insert":
		a := []string{"insert"}
		if b, ok := c.doc.Lookup("bypassDocumentValidation").BooleanOK(); ok && b {
			a = append(a, "bypassDocumentValidation")
		}
		return a, []string{c.db}, true
	case "drop":
		return []string{"dropCollection"}, []string{c.db}, true
	case "dropDatabase":
		return []string{"dropDatabase"}, []string{c.db}, true
	case "renameCollection":
		from, to := str("renameCollection"), str("to")
		if dbOf(from) != dbOf(to) {
			// Across databases it needs find and dropCollection on the
			// source, insert and createCollection on the target, and
			// more: fireops never does it.
			return []string{"renameCollection across databases"}, []string{dbOf(from), dbOf(to)}, true
		}
		a := []string{"renameCollectionSameDB"}
		if b, ok := c.doc.Lookup("dropTarget").BooleanOK(); ok && b {
			a = append(a, "dropCollection")
		}
		return a, []string{dbOf(from)}, true
	}
	return nil, nil, false
}

// recorder is a TCP proxy to a MongoDB server that records the command of
// every OP_MSG a client sends.
type recorder struct {
	ln   net.Listener
	mu   sync.Mutex
	cmds []mongoCommand
	errs []error
}

func newRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.serve(c, target)
		}
	}()
	return r
}

func (r *recorder) serve(client net.Conn, target string) {
	defer client.Close()
	server, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer server.Close()
	go io.Copy(client, server)
	for {
		var hdr [16]byte
		if _, err := io.ReadFull(client, hdr[:]); err != nil {
			return
		}
		n := int(binary.LittleEndian.Uint32(hdr[0:4]))
		if n < 16 || n > 64<<20 {
			return
		}
		msg := make([]byte, n)
		copy(msg, hdr[:])
		if _, err := io.ReadFull(client, msg[16:]); err != nil {
			return
		}
		r.record(msg)
		if _, err := server.Write(msg); err != nil {
			return
		}
	}
}

// record parses an OP_MSG's body section (kind 0): the command is its
// first key, the database its $db.
func (r *recorder) record(msg []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	const opMsg, opQuery = 2013, 2004
	switch op := binary.LittleEndian.Uint32(msg[12:16]); op {
	case opQuery: // the legacy handshake: hello, no privilege
		return
	case opMsg:
	default:
		r.errs = append(r.errs, fmt.Errorf("op code %d: the model reads OP_MSG only", op))
		return
	}
	body := msg[20:]
	for len(body) > 0 {
		kind := body[0]
		body = body[1:]
		if len(body) < 4 {
			break
		}
		size := int(binary.LittleEndian.Uint32(body[:4]))
		if size > len(body) {
			break
		}
		if kind == 0 {
			doc := bson.Raw(slices.Clone(body[:size]))
			elems, err := doc.Elements()
			if err != nil || len(elems) == 0 {
				r.errs = append(r.errs, fmt.Errorf("unreadable command: %v", err))
				return
			}
			db, _ := doc.Lookup("$db").StringValueOK()
			r.cmds = append(r.cmds, mongoCommand{name: elems[0].Key(), db: db, doc: doc})
			return
		}
		body = body[size:]
	}
	r.errs = append(r.errs, errors.New("an OP_MSG without a body section"))
}

func (r *recorder) take() ([]mongoCommand, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, e := r.cmds, r.errs
	r.cmds, r.errs = nil, nil
	return c, e
}

func TestBackupUserPrivileges(t *testing.T) {
	uri, db := testenv.RequireMongo(t)
	c := mongotest.Connect(t, uri)
	mongotest.Seed(t, c, db, "", mongotest.Small)
	restored, scratch := "r_"+db, mongosrc.ScratchDB("priv-"+db)
	mongotest.DropLater(t, c, restored)
	mongotest.DropLater(t, c, scratch)
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(t, u.Host)
	proxied := "mongodb://" + rec.ln.Addr().String() + "/?directConnection=true"
	ctx := context.Background()

	var dump bytes.Buffer
	src, err := mongosrc.New(proxied, []string{db})
	if err != nil {
		t.Fatal(err)
	}
	stats, err := src.WriteTar(ctx, &dump)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	contents, err := mongosrc.Contents(stats.Details)
	if err != nil {
		t.Fatal(err)
	}
	restore := func(what string, o mongosrc.RestoreOptions) {
		t.Helper()
		o.Expect = contents
		if _, err := mongosrc.Plan(ctx, proxied, contents, o); err != nil {
			t.Fatalf("%s: plan: %v", what, err)
		}
		r, err := mongosrc.NewRestorer(proxied, o)
		if err != nil {
			t.Fatal(err)
		}
		st, err := r.Stage(ctx, bytes.NewReader(dump.Bytes()))
		if err != nil {
			t.Fatalf("%s: stage: %v", what, err)
		}
		if err := st.Commit(ctx); err != nil {
			t.Fatalf("%s: commit: %v", what, err)
		}
	}
	restore("restore next to the data", mongosrc.RestoreOptions{ToDB: "r_"})
	restore("restore over it with --drop", mongosrc.RestoreOptions{ToDB: "r_", Drop: true})
	restore("restore-test", mongosrc.RestoreOptions{Scratch: scratch, VerifySums: true})
	if err := mongosrc.DropDatabase(ctx, proxied, scratch); err != nil {
		t.Fatalf("drop the scratch database: %v", err)
	}

	cmds, errs := rec.take()
	for _, err := range errs {
		t.Error(err)
	}
	seen := map[string]bool{}
	for _, cmd := range cmds {
		actions, dbs, known := requiredActions(cmd)
		if !known {
			t.Errorf("fireops sends %s (on %s), which this model does not know: add the privilege it needs from MongoDB's manual, and check that fireops-backup's roles (mongo.go) grant it", cmd.name, cmd.db)
			continue
		}
		seen[cmd.name] = true
		for _, d := range dbs {
			if d == "admin" || d == "local" || d == "config" {
				t.Errorf("%s acts on database %s, where the roles grant nothing", cmd.name, d)
			}
		}
		for _, a := range actions {
			if !grantedActions[a] {
				t.Errorf("%s on %v needs %s, which fireops-backup's roles do not grant", cmd.name, dbs, a)
			}
		}
	}
	// The test must have seen the commands of every step it ran (a
	// snapshot of named databases lists none: listDatabases is in the
	// model all the same).
	for _, want := range []string{"listCollections", "find", "insert", "createIndexes", "renameCollection", "drop", "dropDatabase"} {
		if !seen[want] {
			t.Errorf("no %s command was recorded (seen: %v)", want, seen)
		}
	}
}
