package volume

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/testenv"
)

// TestAPIHardLinkSetuid: tarsafe never applies setuid, setgid or
// sticky to a regular file, and the api write path claims the same policy
// (tarsafe.Checker: "the modes it never applies are taken out"). A user
// whose volume holds a setuid file with a second hard link gets an
// archive whose hard-link entry carries mode 04755: the Engine's
// extraction chmods the linked file to the hard link header's mode, so
// the restored file was setuid again: the policy now takes the bits out of
// hard-link entries too (found by an adversarial review).
func TestAPIHardLinkSetuid(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	cli := engine(t)
	var arch bytes.Buffer
	tw := tar.NewWriter(&arch)
	mt := time.Unix(1700000000, 0)
	body := []byte("#!/bin/sh\nid\n")
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755, ModTime: mt},
		{Typeflag: tar.TypeReg, Name: "tool", Mode: 0o4755, Size: int64(len(body)), ModTime: mt},
		{Typeflag: tar.TypeLink, Name: "tool2", Linkname: "tool", Mode: 0o4755, ModTime: mt},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(body)
		}
	}
	tw.Close()

	for _, mode := range []string{ReadMountpoint, ReadAPI} {
		target := "fireops-test-setid-" + randomHex(4)
		t.Cleanup(func() { removeTestVolume(t, cli, target) })
		rs, err := NewRestorer(target, RestoreOptions{Write: mode})
		if err != nil {
			t.Fatal(err)
		}
		st, err := rs.Stage(context.Background(), bytes.NewReader(arch.Bytes()))
		if err != nil {
			t.Fatalf("%s: stage: %v", mode, err)
		}
		if err := st.Commit(context.Background()); err != nil {
			t.Fatalf("%s: commit: %v", mode, err)
		}
		v, err := cli.VolumeInspect(context.Background(), target)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(filepath.Join(v.Mountpoint, "tool"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != 0 {
			t.Errorf("%s write path: restored tool has mode %v: the setuid bit tarsafe never applies was applied", mode, fi.Mode())
		}
	}
}
