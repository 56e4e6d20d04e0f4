package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/volume"

	"github.com/firetech/fireops/internal/helperimage"
	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/exitcode"
)

// dryRunActions returns the actions a dry run reports where a real run's
// are want: "would remove" for what the run removes, the rest the same.
func dryRunActions(want map[string]string) map[string]string {
	dry := map[string]string{}
	for k, v := range want {
		if v == PruneRemoved {
			v = PruneWouldRemove
		}
		dry[k] = v
	}
	return dry
}

func TestPlanImages(t *testing.T) {
	t.Parallel()
	at := func(min int) time.Time { return time.Date(2026, 11, 1, 12, min, 0, 0, time.UTC) }
	img := func(ref, id string, min int) imageInfo { return imageInfo{Ref: ref, ID: id, Created: at(min)} }
	for _, tc := range []struct {
		name    string
		current string
		imgs    []imageInfo
		used    map[string][]string
		want    map[string]string // ref -> action/reason
	}{
		{
			name: "only the current", current: "nb:c",
			imgs: []imageInfo{img("nb:c", "C", 5)},
			want: map[string]string{"nb:c": "kept/current"},
		},
		{
			name: "current, previous and older ones", current: "nb:c",
			imgs: []imageInfo{img("nb:a", "A", 1), img("nb:b", "B", 2), img("nb:p", "P", 3), img("nb:c", "C", 4)},
			want: map[string]string{"nb:c": "kept/current", "nb:p": "kept/previous", "nb:b": "would remove/", "nb:a": "would remove/"},
		},
		{
			// The previous tag is the newest other one, even when the
			// current one is older (a rollback to an older config).
			name: "rolled back", current: "nb:a",
			imgs: []imageInfo{img("nb:a", "A", 1), img("nb:b", "B", 2), img("nb:c", "C", 3)},
			want: map[string]string{"nb:a": "kept/current", "nb:c": "kept/previous", "nb:b": "would remove/"},
		},
		{
			name: "used by a stopped user server", current: "nb:c",
			imgs: []imageInfo{img("nb:a", "A", 1), img("nb:b", "B", 2), img("nb:p", "P", 3), img("nb:c", "C", 4)},
			used: map[string][]string{"A": {"jupyter-ada", "jupyter-bob"}},
			want: map[string]string{"nb:c": "kept/current", "nb:p": "kept/previous", "nb:b": "would remove/", "nb:a": "kept/used by container jupyter-ada, jupyter-bob"},
		},
		{
			// Not built yet (the config changed, no deploy since): the
			// newest tag is the previous one.
			name: "current not built", current: "nb:new",
			imgs: []imageInfo{img("nb:a", "A", 1), img("nb:b", "B", 2)},
			want: map[string]string{"nb:b": "kept/previous", "nb:a": "would remove/"},
		},
		{
			name: "same second: the tag orders", current: "nb:z",
			imgs: []imageInfo{img("nb:x", "X", 1), img("nb:y", "Y", 1), img("nb:z", "Z", 1)},
			want: map[string]string{"nb:z": "kept/current", "nb:x": "kept/previous", "nb:y": "would remove/"},
		},
		{name: "no tags", current: "nb:c", want: map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]string{}
			for _, p := range planImages(tc.current, tc.imgs, tc.used) {
				got[p.Ref] = p.Action + "/" + p.Reason
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v\nwant %v", got, tc.want)
			}
		})
	}
}

// fakePruneEngine is an Engine in memory.
type fakePruneEngine struct {
	imgs       map[string][]imageInfo
	ctrs       []containerInfo
	vols       []string
	failRemove map[string]bool
	removed    []string
}

func (f *fakePruneEngine) images(_ context.Context, repo string) ([]imageInfo, error) {
	return f.imgs[repo], nil
}
func (f *fakePruneEngine) containers(context.Context) ([]containerInfo, error) { return f.ctrs, nil }
func (f *fakePruneEngine) volumes(_ context.Context, prefix string) ([]string, error) {
	var out []string
	for _, v := range f.vols {
		if strings.HasPrefix(v, prefix) {
			out = append(out, v)
		}
	}
	return out, nil
}
func (f *fakePruneEngine) remove(name string) error {
	if f.failRemove[name] {
		return fmt.Errorf("%s is in use", name)
	}
	f.removed = append(f.removed, name)
	return nil
}
func (f *fakePruneEngine) removeImage(_ context.Context, ref string) error { return f.remove(ref) }
func (f *fakePruneEngine) removeVolume(_ context.Context, name string) error {
	return f.remove(name)
}
func (f *fakePruneEngine) removeContainer(_ context.Context, id string) error {
	for _, c := range f.ctrs {
		if c.ID == id && c.Running {
			return fmt.Errorf("remove container %s: cannot remove a running container", id)
		}
	}
	return f.remove(id)
}

// fakeArchive holds the parts in held; damaged ones failed their verify.
type fakeArchive struct {
	held    map[string]bool
	damaged map[string]bool
	asked   []string
}

type fakeNotHeld struct{ check bool }

func (e fakeNotHeld) Error() string       { return "no verified snapshot holds it" }
func (e fakeNotHeld) IsCheckFailed() bool { return e.check }

func (a *fakeArchive) Find(_ context.Context, part string) (ArchiveRef, error) {
	a.asked = append(a.asked, part)
	switch {
	case a.damaged[part]:
		return ArchiveRef{}, fakeNotHeld{check: true}
	case a.held[part]:
		return ArchiveRef{Destination: "local", Snapshot: "20261101T030000Z-abcdef", Level: "hashes"}, nil
	}
	return ArchiveRef{}, fakeNotHeld{}
}

func newFakePrune() (*fakePruneEngine, *fakeArchive, PruneOptions) {
	at := func(min int) time.Time { return time.Date(2026, 11, 1, 12, min, 0, 0, time.UTC) }
	eng := &fakePruneEngine{
		imgs: map[string][]imageInfo{
			"hub": {{Ref: "hub:h1", ID: "H1", Created: at(1)}, {Ref: "hub:h2", ID: "H2", Created: at(2)}, {Ref: "hub:h3", ID: "H3", Created: at(3)}},
			"nb":  {{Ref: "nb:n1", ID: "N1", Created: at(1)}, {Ref: "nb:n2", ID: "N2", Created: at(2)}, {Ref: "nb:n3", ID: "N3", Created: at(3)}, {Ref: "nb:n4", ID: "N4", Created: at(4)}},
		},
		ctrs: []containerInfo{
			{ID: "c-hub", Name: "firetech-jupyterhub-1", ImageID: "H3", Volumes: []string{"jupyterhub-data"}, Running: true, Compose: true},
			// A deleted user's stopped servers, as the hub leaves them.
			{ID: "c-old", Name: "jupyter-old", ImageID: "N1", Volumes: []string{"jupyterhub-user-old"}},
			{ID: "c-old-gpu", Name: "jupyter-old--gpu", ImageID: "N2", Volumes: []string{"jupyterhub-user-old"}},
			// A deleted user's server still running (the hub lost it).
			{ID: "c-run", Name: "jupyter-run", ImageID: "N3", Volumes: []string{"jupyterhub-user-run"}, Running: true},
			// A container that is not the user's server: a restore's
			// helper, another user's server.
			{ID: "c-helper", Name: "fireops-restore-helper", ImageID: "H1", Volumes: []string{"jupyterhub-user-lent"}},
			{ID: "c-ada", Name: "jupyter-ada", ImageID: "N4", Volumes: []string{"jupyterhub-user-ada", "jupyterhub-user-lent2"}},
			// A stopped server of a deleted user whose volume no
			// snapshot holds.
			{ID: "c-nosnap", Name: "jupyter-nosnap", ImageID: "N3", Volumes: []string{"jupyterhub-user-nosnap"}},
		},
		vols: []string{"jupyterhub-data", "jupyterhub-user-ada", "jupyterhub-user-gone", "jupyterhub-user-old", "jupyterhub-user-nosnap", "jupyterhub-user-bad",
			"jupyterhub-user-run", "jupyterhub-user-lent", "jupyterhub-user-lent2"},
	}
	arch := &fakeArchive{
		held: map[string]bool{"volume:jupyterhub-user-gone": true, "volume:jupyterhub-user-old": true, "volume:jupyterhub-user-ada": true,
			"volume:jupyterhub-user-run": true, "volume:jupyterhub-user-lent": true, "volume:jupyterhub-user-lent2": true},
		damaged: map[string]bool{},
	}
	opts := PruneOptions{
		Volumes:    true,
		Users:      func(context.Context) ([]string, error) { return []string{"ada"}, nil },
		VolumeName: func(u string) string { return "jupyterhub-user-" + u },
		Archive:    arch,
	}
	return eng, arch, opts
}

func actions(res *PruneResult) map[string]string {
	out := map[string]string{}
	for _, im := range res.Images {
		out[im.Ref] = im.Action
	}
	for _, v := range res.Volumes {
		out[v.Name] = v.Action
	}
	return out
}

func TestPrune(t *testing.T) {
	t.Parallel()
	current := map[string]string{"hub": "hub:h3", "nb": "nb:n4"}
	want := map[string]string{
		// hub:h1 is the restore helper's image.
		"hub:h3": "kept", "hub:h2": "kept", "hub:h1": "kept",
		// n1 and n2 were used only by old's stopped servers, which go
		// with old's volume; n3 by running and nosnap containers.
		"nb:n4": "kept", "nb:n3": "kept", "nb:n2": "removed", "nb:n1": "removed",
		// ada exists (not listed); old's only holders are its user's
		// stopped servers; run's server runs; lent and lent2 are mounted
		// by other containers; nosnap has no snapshot.
		"jupyterhub-user-gone": "removed", "jupyterhub-user-old": "removed",
		"jupyterhub-user-nosnap": "kept", "jupyterhub-user-bad": "kept",
		"jupyterhub-user-run": "kept", "jupyterhub-user-lent": "kept", "jupyterhub-user-lent2": "kept",
	}

	t.Run("dry run removes nothing", func(t *testing.T) {
		eng, _, opts := newFakePrune()
		opts.DryRun = true
		res, err := prune(context.Background(), eng, current, opts)
		if err != nil {
			t.Fatal(err)
		}
		dry := dryRunActions(want)
		if got := actions(res); fmt.Sprint(got) != fmt.Sprint(dry) {
			t.Errorf("got %v\nwant %v", got, dry)
		}
		if len(eng.removed) != 0 || !res.DryRun {
			t.Errorf("dry run removed %v", eng.removed)
		}
	})

	t.Run("removes", func(t *testing.T) {
		eng, arch, opts := newFakePrune()
		res, err := prune(context.Background(), eng, current, opts)
		if err != nil {
			t.Fatal(err)
		}
		if got := actions(res); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("got %v\nwant %v", got, want)
		}
		// The containers before their volume, the volumes before the
		// images they freed.
		if fmt.Sprint(eng.removed) != "[jupyterhub-user-gone c-old c-old-gpu jupyterhub-user-old nb:n2 nb:n1]" {
			t.Errorf("removed %v", eng.removed)
		}
		// The archive is asked only about volumes that could go: not about
		// an existing user's, nor a mounted one.
		for _, v := range []string{"ada", "run", "lent", "lent2"} {
			if slices.Contains(arch.asked, "volume:jupyterhub-user-"+v) {
				t.Errorf("archive asked about %v", arch.asked)
			}
		}
		reasons := map[string]string{}
		for _, v := range res.Volumes {
			reasons[v.Name] = v.Reason
			if v.Name == "jupyterhub-user-gone" && (v.Archive == nil || !strings.Contains(v.Reason, "20261101T030000Z-abcdef") || v.Containers != nil) {
				t.Errorf("gone: %+v: want the snapshot named", v)
			}
			if v.Name == "jupyterhub-user-old" && fmt.Sprint(v.Containers) != "[jupyter-old jupyter-old--gpu]" {
				t.Errorf("old: %+v", v)
			}
		}
		for name, want := range map[string]string{
			"jupyterhub-user-old":    "user deleted; snapshot 20261101T030000Z-abcdef on local holds it (verify --level hashes passed); with the deleted user's stopped server container jupyter-old, jupyter-old--gpu",
			"jupyterhub-user-run":    "mounted by container jupyter-run (running)",
			"jupyterhub-user-lent":   "mounted by container fireops-restore-helper",
			"jupyterhub-user-lent2":  "mounted by container jupyter-ada",
			"jupyterhub-user-nosnap": "no verified snapshot holds it; the deleted user's stopped server container jupyter-nosnap stays with it",
		} {
			if reasons[name] != want {
				t.Errorf("%s: reason %q\nwant %q", name, reasons[name], want)
			}
		}
	})

	t.Run("images only", func(t *testing.T) {
		eng, arch, opts := newFakePrune()
		opts.Volumes = false
		res, err := prune(context.Background(), eng, current, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Volumes) != 0 || len(arch.asked) != 0 || slices.ContainsFunc(eng.removed, func(s string) bool { return strings.HasPrefix(s, "jupyterhub-") }) {
			t.Errorf("volumes looked at without Volumes: %v %v", res.Volumes, eng.removed)
		}
	})

	t.Run("damaged snapshot: exit 3, kept", func(t *testing.T) {
		eng, arch, opts := newFakePrune()
		arch.damaged["volume:jupyterhub-user-bad"] = true
		res, err := prune(context.Background(), eng, current, opts)
		if exitcode.Code(err) != exitcode.CheckFailed || !strings.Contains(err.Error(), "jupyterhub-user-bad") {
			t.Fatalf("err %v (code %d), want exit 3 naming the volume", err, exitcode.Code(err))
		}
		if a := actions(res); a["jupyterhub-user-bad"] != PruneKept || a["jupyterhub-user-gone"] != PruneRemoved {
			t.Errorf("actions %v", a)
		}
	})

	t.Run("a removal fails: exit 1, the rest goes", func(t *testing.T) {
		eng, _, opts := newFakePrune()
		eng.failRemove = map[string]bool{"nb:n2": true}
		res, err := prune(context.Background(), eng, current, opts)
		if exitcode.Code(err) != exitcode.Failure || !strings.Contains(err.Error(), "nb:n2") {
			t.Fatalf("err %v, want exit 1 naming nb:n2", err)
		}
		if a := actions(res); a["nb:n2"] != PruneFailed || a["nb:n1"] != PruneRemoved || a["jupyterhub-user-gone"] != PruneRemoved {
			t.Errorf("actions %v", a)
		}
	})

	t.Run("a deleted user's container cannot go: its volume and image stay", func(t *testing.T) {
		eng, _, opts := newFakePrune()
		eng.failRemove = map[string]bool{"c-old-gpu": true}
		res, err := prune(context.Background(), eng, current, opts)
		if exitcode.Code(err) != exitcode.Failure || !strings.Contains(err.Error(), "jupyterhub-user-old") {
			t.Fatalf("err %v, want exit 1 naming the volume", err)
		}
		a := actions(res)
		if a["jupyterhub-user-old"] != PruneFailed || a["nb:n2"] != PruneKept || a["nb:n1"] != PruneRemoved || a["jupyterhub-user-gone"] != PruneRemoved {
			t.Errorf("actions %v", a)
		}
		for _, im := range res.Images {
			if im.Ref == "nb:n2" && im.Reason != "used by container jupyter-old--gpu" {
				t.Errorf("nb:n2: %+v", im)
			}
		}
		if slices.Contains(eng.removed, "jupyterhub-user-old") {
			t.Errorf("removed %v", eng.removed)
		}
	})

	t.Run("hub unreachable: nothing removed", func(t *testing.T) {
		eng, _, opts := newFakePrune()
		opts.Users = func(context.Context) ([]string, error) { return nil, errors.New("hub API unreachable") }
		if _, err := prune(context.Background(), eng, current, opts); err == nil || !strings.Contains(err.Error(), "hub API unreachable") {
			t.Fatalf("err %v", err)
		}
		if len(eng.removed) != 0 {
			t.Errorf("removed %v although the users could not be listed", eng.removed)
		}
	})

	t.Run("no users: refused", func(t *testing.T) {
		eng, _, opts := newFakePrune()
		opts.Users = func(context.Context) ([]string, error) { return nil, nil }
		if _, err := prune(context.Background(), eng, current, opts); err == nil || !strings.Contains(err.Error(), "knows no users") {
			t.Fatalf("err %v", err)
		}
		if len(eng.removed) != 0 {
			t.Errorf("removed %v with no users known", eng.removed)
		}
	})
}

// TestPruneDeletedUsersContainer: the stopped server container the hub
// keeps after its user was deleted no longer keeps that user's volume
// forever.
func TestPruneDeletedUsersContainer(t *testing.T) {
	t.Parallel()
	eng, _, opts := newFakePrune() // "old" is not among Users; jupyter-old (stopped) mounts its volume
	res, err := prune(t.Context(), eng, map[string]string{"hub": "hub:h3", "nb": "nb:n4"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range res.Volumes {
		if v.Name == "jupyterhub-user-old" {
			found = true
			if v.Action != PruneRemoved {
				t.Errorf("deleted user's volume: %s (%s)", v.Action, v.Reason)
			}
		}
	}
	if !found {
		t.Error("jupyterhub-user-old not looked at")
	}
}

// TestPruneEngineDeletedUsersServers runs the volume part of prune on the
// real Engine: a deleted user's volume that their running server mounts
// stays; once the server is stopped, prune removes the user's stopped
// server containers and then the volume, and leaves a Compose container
// named like a server alone.
func TestPruneEngineDeletedUsersServers(t *testing.T) {
	testenv.RequireDocker(t)
	ctx := context.Background()
	img := stubImage(t)
	eng, err := NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	cli := eng.cli
	b := make([]byte, 4)
	rand.Read(b)
	esc := "prunetest" + hex.EncodeToString(b)
	vol := UserVolumePrefix + esc
	if _, err := cli.VolumeCreate(ctx, volume.CreateOptions{Name: vol}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.VolumeRemove(context.Background(), vol, true) })
	create := func(name string, labels map[string]string, withVolume, start bool) string {
		t.Helper()
		s := helperimage.Server{Name: name, Labels: labels, Start: start}
		if withVolume {
			s.HomeVolume = vol
		}
		return helperimage.CreateServer(t, cli, img, s)
	}
	stopped := create("jupyter-"+esc, nil, true, false)
	running := create("jupyter-"+esc+"--gpu", nil, true, true)
	svc := create("jupyter-"+esc+"--svc", map[string]string{labelProject: "t-" + esc}, false, false)

	ctrs, err := eng.containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range ctrs {
		if strings.Contains(c.Name, esc) {
			got[c.Name] = fmt.Sprintf("id %v running %v compose %v volumes %v", len(c.ID) == 64, c.Running, c.Compose, c.Volumes)
		}
	}
	want := map[string]string{
		"jupyter-" + esc:           "id true running false compose false volumes [" + vol + "]",
		"jupyter-" + esc + "--gpu": "id true running true compose false volumes [" + vol + "]",
		"jupyter-" + esc + "--svc": "id true running false compose true volumes []",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("containers:\n%v\nwant\n%v", got, want)
	}

	opts := PruneOptions{
		Volumes:    true,
		Users:      func(context.Context) ([]string, error) { return []string{"someone-else"}, nil },
		VolumeName: func(u string) string { return UserVolumePrefix + u },
		// Only this test's volume is archived: every other volume on the
		// Engine stays.
		Archive: e2eArchive{held: map[string]bool{vol: true}},
	}
	current := map[string]string{"fireops-prunetest-none-" + esc: "fireops-prunetest-none-" + esc + ":x"}
	volumeOf := func(res *PruneResult) PrunedVolume {
		for _, v := range res.Volumes {
			if v.Name == vol {
				return v
			}
		}
		t.Fatalf("%s not looked at: %+v", vol, res.Volumes)
		return PrunedVolume{}
	}
	res, err := prune(ctx, eng, current, opts)
	if err != nil {
		t.Fatal(err)
	}
	if v := volumeOf(res); v.Action != PruneKept || v.Reason != "mounted by container jupyter-"+esc+"--gpu (running)" {
		t.Errorf("while a server runs: %+v", v)
	}
	timeout := 10
	if err := cli.ContainerStop(ctx, running, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	res, err = prune(ctx, eng, current, opts)
	if err != nil {
		t.Fatal(err)
	}
	if v := volumeOf(res); v.Action != PruneRemoved || fmt.Sprint(v.Containers) != "[jupyter-"+esc+" jupyter-"+esc+"--gpu]" {
		t.Errorf("stopped: %+v", v)
	}
	for _, id := range []string{stopped, running} {
		if _, err := cli.ContainerInspect(ctx, id); err == nil {
			t.Errorf("container %s is still there", id)
		}
	}
	if _, err := cli.VolumeInspect(ctx, vol); err == nil {
		t.Error("the volume is still there")
	}
	if _, err := cli.ContainerInspect(ctx, svc); err != nil {
		t.Errorf("the Compose container went: %v", err)
	}
}
