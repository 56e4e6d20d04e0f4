package volume

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/leftover"
)

// TestStagingLeftoversRemoved: the staging volumes (and helper containers)
// that killed restores of this host left for a target are removed by the
// next restore into it, with a log line, and the others by CleanStaging
// (fireops rotate); a live run's, another host's, an older fireops's and
// one whose holding folder may hold the live content are kept. Not
// parallel: it gives the process a host id of its own (runHost), so that
// no other process on this host removes what it made.
func TestStagingLeftoversRemoved(t *testing.T) {
	testenv.RequireRoot(t)
	cli := engine(t)
	host := "test-" + randomHex(4)
	saved := runHost
	runHost = func() string { return host }
	t.Cleanup(func() { runHost = saved })
	ctx := context.Background()

	src, mp := newVolume(t, cli, "left-src")
	if err := os.WriteFile(filepath.Join(mp, "notes.txt"), []byte("restored"), 0o644); err != nil {
		t.Fatal(err)
	}
	part := snapshotPart(t, src, Options{})
	target := "fireops-test-left-dst-" + randomHex(4)
	other := "fireops-test-left-other-" + randomHex(4)
	t.Cleanup(func() { removeTestVolume(t, cli, target) })

	boot, _, _ := strings.Cut(leftover.Tag(), "-")
	dead := func(n int) string { return boot + "-" + strconv.Itoa(1<<22+n) + "-5" } // no such pid, as after SIGKILL
	parent, err := leftover.TagOf(os.Getppid())
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name, tgt string, labels map[string]string) (string, string) {
		t.Helper()
		l := map[string]string{LabelStaging: tgt}
		for k, v := range labels {
			l[k] = v
		}
		v, err := cli.VolumeCreate(ctx, volume.CreateOptions{Name: name, Driver: "local", Labels: l})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { removeTestVolume(t, cli, name) })
		if err := os.WriteFile(filepath.Join(v.Mountpoint, "secret"), []byte("a user's plaintext"), 0o600); err != nil {
			t.Fatal(err)
		}
		return name, v.Mountpoint
	}
	mine := map[string]string{LabelHost: host}
	deadVol, _ := mk(stagingPrefix+dead(301)+"-aaaa", target, mine)
	deadAPI, _ := mk(stagingPrefix+dead(302)+"-bbbb", target, map[string]string{LabelHost: host, labelSwap: "no"})
	deadHold, holdMp := mk(stagingPrefix+dead(303)+"-cccc", target, mine)
	if err := os.Mkdir(holdFolder(holdMp), 0o700); err != nil {
		t.Fatal(err)
	}
	liveSelf, _ := mk(leftover.Name(stagingPrefix, "dddd"), target, mine)
	liveParent, _ := mk(stagingPrefix+parent+"-eeee", target, mine)
	otherHost, _ := mk(stagingPrefix+dead(304)+"-ffff", target, map[string]string{LabelHost: host + "x"})
	legacy, _ := mk(stagingPrefix+randomHex(6), target, mine)
	otherTarget, _ := mk(stagingPrefix+dead(305)+"-abab", other, mine)

	// The killed run had a helper container on its staging volume.
	c, err := NewClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, err := c.newHelper(ctx, deadVol, true)
	if err != nil {
		t.Fatal(err)
	}
	defer h.remove()

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	rs, err := NewRestorer(target, RestoreOptions{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	st, err := rs.Stage(ctx, bytes.NewReader(part))
	if err != nil {
		t.Fatal(err)
	}
	// This run's staging volume carries its tag and host.
	own := st.(*staged).name
	v, err := cli.VolumeInspect(ctx, own)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(own, stagingPrefix+leftover.Tag()+"-") || v.Labels[LabelHost] != host || v.Labels[LabelStaging] != target {
		t.Errorf("staging volume %s, labels %v: no run tag or host", own, v.Labels)
	}
	if err := st.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if tv, err := cli.VolumeInspect(ctx, target); err != nil {
		t.Fatal(err)
	} else if b, _ := os.ReadFile(filepath.Join(tv.Mountpoint, "notes.txt")); string(b) != "restored" {
		t.Errorf("the restore did not restore: %q", b)
	}

	exists := func(name string) bool {
		_, err := cli.VolumeInspect(ctx, name)
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	removedBy := func(logs *bytes.Buffer, name string) {
		t.Helper()
		if exists(name) {
			t.Errorf("%s, left by a killed restore, is still there", name)
		}
		if !strings.Contains(logs.String(), `msg="removed what an interrupted fireops run left behind" volume=`+name) {
			t.Errorf("no log line for %s:\n%s", name, logs.String())
		}
	}
	removedBy(&logs, deadVol)
	removedBy(&logs, deadAPI)
	cs, err := cli.ContainerList(ctx, containerListAll(LabelVolume+"="+deadVol))
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 0 {
		t.Errorf("the killed run's helper container is still there")
	}
	kept := []string{deadHold, liveSelf, liveParent, otherHost, legacy, otherTarget}
	for _, name := range kept {
		if !exists(name) {
			t.Errorf("%s was removed", name)
		}
	}
	if exists(own) {
		t.Errorf("the restore left its own staging volume %s", own)
	}
	for _, want := range []string{"holding folder", deadHold, "older fireops", legacy} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs.String())
		}
	}

	// fireops rotate: every target's.
	var rlogs bytes.Buffer
	removed, err := c.CleanStaging(ctx, slog.New(slog.NewTextHandler(&rlogs, nil)))
	if err != nil || len(removed) != 1 || removed[0] != otherTarget {
		t.Errorf("CleanStaging removed %v, %v; want %s", removed, err, otherTarget)
	}
	removedBy(&rlogs, otherTarget)
	for _, name := range kept[:5] {
		if !exists(name) {
			t.Errorf("%s was removed", name)
		}
	}
}

func containerListAll(label string) container.ListOptions {
	return container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))}
}
