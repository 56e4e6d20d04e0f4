package users

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/firetech/fireops/pkg/exitcode"
)

func TestServerContainerUser(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, want string
		ok         bool
	}{
		{"jupyter-maria", "maria", true},
		{"/jupyter-maria", "maria", true},
		{"jupyter-maria--gpu", "maria", true},
		{"jupyter-ivan-2epetrov", "ivan-2epetrov", true},
		{"jupyter-ivan-2epetrov--big-2drun", "ivan-2epetrov", true},
		{"jupyter-" + EscapeUsername("Bob Smith") + "--x", EscapeUsername("Bob Smith"), true},
		{"jupyter-", "", false},
		{"jupyter---x", "", false},
		{"jupyter-Maria", "", false},         // DockerSpawner never leaves a capital
		{"jupyter-mongodb-1", "", false},     // '-' not followed by two hex digits
		{"firetech-jupyterhub-1", "", false}, // a stack service
		{"jupyterhub-user-maria", "", false},
	} {
		got, ok := ServerContainerUser(c.name)
		if got != c.want || ok != c.ok {
			t.Errorf("ServerContainerUser(%q) = %q, %v; want %q, %v", c.name, got, ok, c.want, c.ok)
		}
	}
	if got, _ := ServerContainerUser(ServerContainerPrefix + EscapeUsername("ann")); got == EscapeUsername("anna") {
		t.Error("ann's container taken for anna's")
	}
}

// fakeServers is ServerContainers in memory.
type fakeServers struct {
	ctrs    map[string][]ServerContainer // user -> containers
	failRm  map[string]bool
	removed []string
	listErr error
}

func (f *fakeServers) List(_ context.Context, user string) ([]ServerContainer, error) {
	return f.ctrs[user], f.listErr
}

func (f *fakeServers) Remove(_ context.Context, c ServerContainer) error {
	if f.failRm[c.Name] {
		return fmt.Errorf("remove container %s: cannot remove a running container", c.Name)
	}
	f.removed = append(f.removed, c.Name)
	return nil
}

// TestDeleteServerContainers: delete removes the user's stopped server
// containers, refuses while one runs (nothing changed), and a failed
// removal keeps the hub user and sign-up for a second run.
func TestDeleteServerContainers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path, db := tempDB(t)
	var hubDeletes []string
	m := hubManager(t, path, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/hub/api/users":
			w.Write([]byte("[]"))
		case r.Method == http.MethodDelete:
			hubDeletes = append(hubDeletes, strings.TrimPrefix(r.URL.Path, "/hub/api/users/"))
			w.WriteHeader(http.StatusNoContent)
		case r.URL.Path == "/hub/api/users/ann":
			w.Write([]byte(`{"name": "ann"}`))
		default:
			http.Error(w, `{"status": 404, "message": "no such user"}`, http.StatusNotFound)
		}
	})
	srv := newFakeMongo()
	m.SetMongo(&MongoAccounts{Server: srv, Dir: t.TempDir()})
	signUp(t, db, "ann", "", true)
	if _, _, err := m.Approve(ctx, []string{"ann"}, ApproveOptions{}); err != nil {
		t.Fatal(err)
	}
	servers := &fakeServers{ctrs: map[string][]ServerContainer{"ann": {
		{ID: "a1", Name: "jupyter-ann", State: "exited"},
		{ID: "a2", Name: "jupyter-ann--gpu", State: "running"},
	}}}
	m.SetContainers(servers)

	// A server runs: refused, nothing changed.
	_, err := m.Delete(ctx, "ann")
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "ann's server is running (container jupyter-ann--gpu): nothing was deleted") ||
		!strings.Contains(exitcode.Hint(err), "stop the server first") || !strings.Contains(exitcode.Hint(err), "docker stop jupyter-ann--gpu") {
		t.Fatalf("running server: %v (hint %q)", err, exitcode.Hint(err))
	}
	if n, _ := approvedRows(t, db, "ann"); n != 1 || len(servers.removed) != 0 || len(hubDeletes) != 0 || len(srv.users) != 1 {
		t.Errorf("refused, yet changed: rows %d, removed %v, hub deletes %v, MongoDB users %v", n, servers.removed, hubDeletes, srv.users)
	}

	// Every state but created, exited and dead counts as running.
	for _, st := range []string{"paused", "restarting", "removing"} {
		servers.ctrs["ann"][1].State = st
		if _, err := m.Delete(ctx, "ann"); exitcode.Code(err) != exitcode.Usage {
			t.Errorf("state %s: %v", st, err)
		}
	}

	// Stopped, but the Engine refuses one removal: the hub user and the
	// sign-up stay for a second run.
	servers.ctrs["ann"][1].State = "created"
	servers.failRm = map[string]bool{"jupyter-ann--gpu": true}
	_, err = m.Delete(ctx, "ann")
	if err == nil || !strings.Contains(err.Error(), "the hub user and the sign-up were not deleted") || !strings.Contains(exitcode.Hint(err), "fireops users delete ann --yes") {
		t.Fatalf("failed removal: %v (hint %q)", err, exitcode.Hint(err))
	}
	if n, _ := approvedRows(t, db, "ann"); n != 1 || len(hubDeletes) != 0 {
		t.Errorf("after a failed removal: rows %d, hub deletes %v", n, hubDeletes)
	}

	servers.failRm = nil
	servers.removed = nil
	res, err := m.Delete(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(res.Containers) != "[jupyter-ann jupyter-ann--gpu]" || fmt.Sprint(servers.removed) != "[jupyter-ann jupyter-ann--gpu]" ||
		!res.HubUser || res.Rows != 1 || res.Mongo.Action != MongoAbsent {
		t.Errorf("delete: %+v, removed %v", res, servers.removed)
	}

	// The Engine does not answer: nothing is deleted.
	signUp(t, db, "bo", "", true)
	servers.listErr = errors.New("Cannot connect to the Docker daemon")
	if _, err := m.Delete(ctx, "bo"); err == nil || !strings.Contains(err.Error(), "bo (nothing was deleted): Cannot connect") {
		t.Errorf("Engine down: %v", err)
	}
	if n, _ := approvedRows(t, db, "bo"); n != 1 {
		t.Error("bo's sign-up was deleted although the Engine did not answer")
	}
}
