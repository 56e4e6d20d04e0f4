package tarsafe

import "strings"

// nameTree holds cleaned, slash-separated entry names as a tree of their
// components, each node knowing its parent: many names in one folder, or
// in folders below one, share the nodes of their common folders. It is
// how [HeaderBuilder], [Checker] and [Extract] (the folders whose modes
// it applies at the end) remember names of an archive whose entries a
// user made: an entry's name may be hundreds of KiB (thousands of folders
// deep; [MaxNameLen]), and a copy of it per remembered entry let a
// user's many cheap entries in one deep folder, or a deep chain of
// folders, take the memory of that path each. Looking a name up costs its length, not its
// length times its depth (the hashing of every parent path). Memory grows
// with the components added, at most the bytes of the names added. Not
// safe for concurrent use.
type nameTree struct {
	root nameNode
	kids map[nameKey]*nameNode // every node but the root, by parent and base
}

// nameKey finds a node of a nameTree: its parent and its component.
type nameKey struct {
	parent *nameNode
	base   string
}

// nameNode is one component of a nameTree.
type nameNode struct {
	parent *nameNode
	base   string // a copy, never a slice of a name added (which it would keep whole)
	// symlink marks a Checker's symbolic link.
	symlink bool
}

// find returns the node of name, creating it and its parents with
// create; nil when it is missing and create is false.
func (t *nameTree) find(name string, create bool) *nameNode {
	n := &t.root
	for rest := name; ; {
		c, after, more := strings.Cut(rest, "/")
		k := t.kids[nameKey{n, c}]
		if k == nil {
			if !create {
				return nil
			}
			if t.kids == nil {
				t.kids = map[nameKey]*nameNode{}
			}
			k = &nameNode{parent: n, base: strings.Clone(c)}
			t.kids[nameKey{n, k.base}] = k
		}
		n = k
		if !more {
			return n
		}
		rest = after
	}
}

// aboveSymlink returns the first folder of name (its parents, not name
// itself) marked a symbolic link, as a path; "" when none is.
func (t *nameTree) aboveSymlink(name string) string {
	n := &t.root
	for rest := name; ; {
		c, after, more := strings.Cut(rest, "/")
		if !more {
			return ""
		}
		if n = t.kids[nameKey{n, c}]; n == nil {
			return ""
		}
		if n.symlink {
			return n.path()
		}
		rest = after
	}
}

// path returns the name n stands for.
func (n *nameNode) path() string {
	size := -1
	for m := n; m.parent != nil; m = m.parent {
		size += len(m.base) + 1
	}
	if size <= 0 {
		return ""
	}
	b := make([]byte, size)
	i := size
	for m := n; m.parent != nil; m = m.parent {
		i -= len(m.base)
		copy(b[i:], m.base)
		if i > 0 {
			i--
			b[i] = '/'
		}
	}
	return string(b)
}
