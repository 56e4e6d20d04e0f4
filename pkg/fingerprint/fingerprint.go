// Package fingerprint writes the metadata line of one file system entry
// that folder-like sources (files, volumes read from their mountpoint)
// hash into their cheap fingerprint: a part is reused only when every
// entry's line is unchanged, and no file content is read.
package fingerprint

import (
	"fmt"
	"io/fs"
	"strconv"
	"syscall"
)

// AppendEntry appends the line of one entry to buf: its quoted name, mode,
// size, mtime and ctime in nanoseconds, owner ids, link count and quoted
// symlink target. ctime and the link count go beyond path, size, mtime,
// mode and owner: a file rewritten with its old mtime put back (cp -p,
// rsync -t) still changes ctime, and a wrongly reused part loses data
// while a needless upload only costs time.
func AppendEntry(buf []byte, name string, fi fs.FileInfo, link string) ([]byte, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return buf, fmt.Errorf("%s: no stat data", name)
	}
	buf = strconv.AppendQuote(buf, name)
	buf = fmt.Appendf(buf, " %o %d %d %d %d %d %d ", uint32(fi.Mode()), fi.Size(),
		st.Mtim.Nano(), st.Ctim.Nano(), st.Uid, st.Gid, st.Nlink)
	buf = strconv.AppendQuote(buf, link)
	return append(buf, '\n'), nil
}
