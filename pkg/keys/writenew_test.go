package keys

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// TestWriteNewFileAppearsComplete: the final name is never written to:
// every write of WriteNewFile goes to another name (a temp file), and the
// final name appears (IN_CREATE) only after that file was written, so a
// crash or kill -9 mid-write cannot leave a partial key file that the next
// fireops init refuses to replace. The order is read from the folder's
// inotify events, not from timing. (Not IN_CLOSE_WRITE: a fork in another
// test holds the file open a little longer and delays that event.)
func TestWriteNewFileAppearsComplete(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		t.Skipf("inotify: %v", err)
	}
	defer syscall.Close(fd)
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE|syscall.IN_MODIFY|syscall.IN_MOVED_TO); err != nil {
		t.Fatalf("inotify watch %s: %v", dir, err)
	}
	data := bytes.Repeat([]byte("AGE-SECRET-KEY-1\n"), 1000)
	if err := WriteNewFile(filepath.Join(dir, "identity.txt"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "identity.txt")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("identity.txt: %d bytes, %v; want %d", len(got), err, len(data))
	}

	type event struct {
		mask uint32
		name string
	}
	var events []event
	buf := make([]byte, 64*1024)
	for {
		n, err := syscall.Read(fd, buf)
		if err == syscall.EAGAIN || n <= 0 {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+int(ev.Len)]
			events = append(events, event{ev.Mask, strings.TrimRight(string(name), "\x00")})
			off += syscall.SizeofInotifyEvent + int(ev.Len)
		}
	}
	written := false // data was written to a file other than identity.txt
	appeared := false
	for _, e := range events {
		switch {
		case e.name == "identity.txt" && e.mask&syscall.IN_MODIFY != 0:
			t.Errorf("identity.txt itself was written to: a crash then leaves it partial")
		case e.name == "identity.txt" && e.mask&(syscall.IN_CREATE|syscall.IN_MOVED_TO) != 0:
			appeared = true
			if !written {
				t.Errorf("identity.txt appeared before its content was written")
			}
		case e.mask&syscall.IN_MODIFY != 0:
			written = true
		}
	}
	if !appeared {
		t.Errorf("no event for identity.txt appearing: %v", events)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries, want identity.txt alone (a temp file left?)", len(entries))
	}
}

// TestWriteNewFileFailedWriteLeavesNothing: a write that fails mid-way
// (the file-size limit, RLIMIT_FSIZE, set in a child process so that the
// other tests' files are not limited) leaves neither the final name nor a
// temp file, and the error names the final path.
func TestWriteNewFileFailedWriteLeavesNothing(t *testing.T) {
	t.Parallel()
	if dir := os.Getenv("FIREOPS_KEYS_FSIZE_DIR"); dir != "" {
		lim := syscall.Rlimit{Cur: 100, Max: 100}
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
			t.Fatalf("setrlimit: %v", err)
		}
		err := WriteNewFile(filepath.Join(dir, "signing.key"), bytes.Repeat([]byte("k"), 4096), 0o600)
		if err == nil {
			t.Fatal("a write past the file-size limit succeeded")
		}
		os.Stdout.WriteString("ERROR: " + err.Error() + "\n")
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestWriteNewFileFailedWriteLeavesNothing$", "-test.v")
	cmd.Env = append(os.Environ(), "FIREOPS_KEYS_FSIZE_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	want := "ERROR: write " + filepath.Join(dir, "signing.key") + ": "
	if !strings.Contains(string(out), want) {
		t.Errorf("child's output does not say %q:\n%s", want, out)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left behind: %s", e.Name())
	}
}

// TestWriteNewFileErrorsNamePath: the errors of a file that exists and of
// a folder that cannot be written to name the final path (as the O_EXCL
// open did), never the temp file's name.
func TestWriteNewFileErrorsNamePath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	exists := filepath.Join(dir, "exists")
	if err := os.WriteFile(exists, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "no", "identity.txt")
	for _, c := range []struct{ path, want string }{
		{exists, "open " + exists + ": file exists"},
		{missing, "open " + missing + ": no such file or directory"},
	} {
		err := WriteNewFile(c.path, []byte("k"), 0o600)
		if err == nil || err.Error() != c.want {
			t.Errorf("WriteNewFile(%s): %v, want %q", c.path, err, c.want)
		}
	}
}
