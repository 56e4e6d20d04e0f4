package tarsafe

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFstatDirMatchesFstat: the statx the chain opens folders with gives
// the FileInfo the fstat gave (headers are made from it).
func TestFstatDirMatchesFstat(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o1750); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	want, err := Fstat(fd, "d", dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fstatDir(fd, "d", dir)
	if err != nil {
		t.Fatal(err)
	}
	if *want.(*statInfo) != got.statInfo {
		t.Errorf("statx: %+v, fstat: %+v", got.statInfo, *want.(*statInfo))
	}
	if got.id.ino != got.sys.Ino || got.id.dev != got.sys.Dev || got.id.btime == 0 && got.id.mnt == 0 {
		t.Errorf("folderID %+v of %+v", got.id, got.sys)
	}
}
