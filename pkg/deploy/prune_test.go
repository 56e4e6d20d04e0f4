package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firetech/fireops/pkg/exitcode"
)

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
			{Name: "firetech-jupyterhub-1", ImageID: "H3", Volumes: []string{"jupyterhub-data"}},
			{Name: "jupyter-old", ImageID: "N1", Volumes: []string{"jupyterhub-user-old"}},
		},
		vols: []string{"jupyterhub-data", "jupyterhub-user-ada", "jupyterhub-user-gone", "jupyterhub-user-old", "jupyterhub-user-nosnap", "jupyterhub-user-bad"},
	}
	arch := &fakeArchive{
		held:    map[string]bool{"volume:jupyterhub-user-gone": true, "volume:jupyterhub-user-old": true, "volume:jupyterhub-user-ada": true},
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
		"hub:h3": "kept", "hub:h2": "kept", "hub:h1": "removed",
		"nb:n4": "kept", "nb:n3": "kept", "nb:n2": "removed", "nb:n1": "kept",
		// ada exists (not listed); old is mounted by a stopped container;
		// nosnap has no snapshot.
		"jupyterhub-user-gone": "removed", "jupyterhub-user-old": "kept",
		"jupyterhub-user-nosnap": "kept", "jupyterhub-user-bad": "kept",
	}

	t.Run("dry run removes nothing", func(t *testing.T) {
		eng, _, opts := newFakePrune()
		opts.DryRun = true
		res, err := prune(context.Background(), eng, current, opts)
		if err != nil {
			t.Fatal(err)
		}
		dry := map[string]string{}
		for k, v := range want {
			if v == PruneRemoved {
				v = PruneWouldRemove
			}
			dry[k] = v
		}
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
		if slices.Sort(eng.removed); fmt.Sprint(eng.removed) != "[hub:h1 jupyterhub-user-gone nb:n2]" {
			t.Errorf("removed %v", eng.removed)
		}
		// The archive is asked only about volumes that could go: not about
		// an existing user's, nor a mounted one.
		if slices.Contains(arch.asked, "volume:jupyterhub-user-ada") || slices.Contains(arch.asked, "volume:jupyterhub-user-old") {
			t.Errorf("archive asked about %v", arch.asked)
		}
		for _, v := range res.Volumes {
			if v.Name == "jupyterhub-user-gone" && (v.Archive == nil || !strings.Contains(v.Reason, "20261101T030000Z-abcdef")) {
				t.Errorf("gone: %+v: want the snapshot named", v)
			}
			if v.Name == "jupyterhub-user-old" && v.Reason != "mounted by container jupyter-old" {
				t.Errorf("old: %+v", v)
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
		if a := actions(res); a["nb:n2"] != PruneFailed || a["hub:h1"] != PruneRemoved || a["jupyterhub-user-gone"] != PruneRemoved {
			t.Errorf("actions %v", a)
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
