package gpuusage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/firetech/fireops/pkg/gpucheck"
)

// fakeProc is a /proc with a cgroup file per pid.
type fakeProc string

func newFakeProc(t *testing.T) fakeProc { return fakeProc(t.TempDir()) }

func (p fakeProc) add(t *testing.T, pid uint32, cgroup string) {
	t.Helper()
	dir := filepath.Join(string(p), strconv.FormatUint(uint64(pid), 10))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (p fakeProc) inContainer(t *testing.T, pid uint32, id string) {
	p.add(t, pid, "0::/system.slice/docker-"+id+".scope\n")
}

// fakeContainers answers from a table and counts the questions.
type fakeContainers struct {
	byID  map[string]Container
	err   error
	asked map[string]int
}

func (f *fakeContainers) Inspect(_ context.Context, id string) (Container, error) {
	if f.asked == nil {
		f.asked = map[string]int{}
	}
	f.asked[id]++
	if f.err != nil {
		return Container{}, f.err
	}
	c, ok := f.byID[id]
	if !ok {
		return Container{}, fmt.Errorf("container %s: %w", id, ErrNoContainer)
	}
	return c, nil
}

// hexID is a container id whose every digit is n's last hex digit (so
// that short ids differ too).
func hexID(n int) string { return strings.Repeat(fmt.Sprintf("%x", n%16), 64) }

// TestResolverOwners places processes: a user server, a named server, a
// container of the stack, a container the Engine does not know, a host
// process and a process that exited; then checks that the Engine is asked
// once per container, that what it said is forgotten once the container
// stops using the GPUs, and that failures are reported by operation.
func TestResolverOwners(t *testing.T) {
	proc := newFakeProc(t)
	alice, aliceExp, grafana, foreign := hexID(1), hexID(2), hexID(3), hexID(4)
	proc.inContainer(t, 10, alice)
	proc.inContainer(t, 11, alice)
	proc.add(t, 20, "12:memory:/docker/"+aliceExp+"\n")
	proc.inContainer(t, 30, grafana)
	proc.inContainer(t, 40, foreign)
	proc.add(t, 50, "0::/user.slice/user-0.slice/session-1.scope\n")
	// pid 60 has exited: no /proc/60.
	cs := &fakeContainers{byID: map[string]Container{
		alice:    {ID: alice, Name: "jupyter-alice"},
		aliceExp: {ID: aliceExp, Name: "jupyter-alice--exp"},
		grafana:  {ID: grafana, Name: "fireops-grafana-1", Labels: map[string]string{composeProjectLabel: "fireops"}},
	}}
	var failures []string
	r := &Resolver{ProcRoot: string(proc), Containers: cs, OnError: func(op string, err error) { failures = append(failures, op+": "+err.Error()) }}

	got := r.Owners(context.Background(), []uint32{10, 11, 20, 30, 40, 50, 60})
	want := map[uint32]gpucheck.Owner{
		10: {ContainerID: alice, Container: "jupyter-alice", User: "alice"},
		11: {ContainerID: alice, Container: "jupyter-alice", User: "alice"},
		20: {ContainerID: aliceExp, Container: "jupyter-alice--exp", User: "alice", Server: "exp"},
		30: {ContainerID: grafana, Container: "fireops-grafana-1"},
		40: {ContainerID: foreign},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("owners = %+v\nwant %+v", got, want)
	}
	if len(failures) != 0 {
		t.Errorf("failures: %v", failures)
	}

	// Again, with alice's default server gone: the Engine is not asked
	// about the containers it already named, and alice's is forgotten.
	got = r.Owners(context.Background(), []uint32{20, 30})
	if got[20].User != "alice" || got[30].Container != "fireops-grafana-1" {
		t.Errorf("second call: %+v", got)
	}
	if cs.asked[aliceExp] != 1 || cs.asked[grafana] != 1 || cs.asked[alice] != 1 {
		t.Errorf("the Engine was asked %v", cs.asked)
	}
	if _, kept := r.known[alice]; kept || len(r.known) != 2 {
		t.Errorf("the resolver keeps %d containers (alice's: %v), want the 2 in use", len(r.known), kept)
	}

	// The Engine down: the processes keep their container id, no name, no
	// user, and each failure is reported.
	cs.err = errors.New("Cannot connect to the Docker daemon")
	got = r.Owners(context.Background(), []uint32{10})
	if got[10] != (gpucheck.Owner{ContainerID: alice}) {
		t.Errorf("Engine down: %+v", got[10])
	}
	if len(failures) != 1 || failures[0] != "docker: Cannot connect to the Docker daemon" {
		t.Errorf("failures: %v", failures)
	}

	// An unreadable cgroup file is a failure (a vanished process is not).
	if os.Geteuid() != 0 {
		failures = nil
		if err := os.Chmod(filepath.Join(string(proc), "50", "cgroup"), 0); err != nil {
			t.Fatal(err)
		}
		r.Owners(context.Background(), []uint32{50, 60})
		if len(failures) != 1 || failures[0][:7] != "cgroup:" {
			t.Errorf("failures: %v", failures)
		}
	}
	// A cgroup path that is a folder cannot be read: a failure too.
	failures = nil
	if err := os.MkdirAll(filepath.Join(string(proc), "70", "cgroup"), 0o755); err != nil {
		t.Fatal(err)
	}
	r.Owners(context.Background(), []uint32{70, 60})
	if len(failures) != 1 || failures[0][:7] != "cgroup:" {
		t.Errorf("failures: %v", failures)
	}
}
