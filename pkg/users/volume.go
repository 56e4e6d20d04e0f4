package users

import "strings"

// VolumePrefix is the start of every user volume's name in the stack
// (DockerSpawner's volumes setting "jupyterhub-user-{username}").
const VolumePrefix = "jupyterhub-user-"

// EscapeUsername escapes a hub username the way DockerSpawner (12 and
// later) does before it puts it into container and volume names: bytes in
// [a-z0-9] stay, every other byte of the name's UTF-8 form becomes '-'
// followed by its two hex digits, in lower case ("bob-smith" ->
// "bob-2dsmith", "Bob" -> "-42ob", "ü" -> "-c3-bc"). The '-' itself is
// escaped, so two different names never give the same result.
func EscapeUsername(name string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('-')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// VolumeName returns the name of the Docker volume DockerSpawner creates
// for the hub user name: VolumePrefix + EscapeUsername(name).
func VolumeName(name string) string {
	return VolumePrefix + EscapeUsername(name)
}
