package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestSecretsGeneratedOnceAndPrivate(t *testing.T) {
	t.Parallel()
	st := render(t, "cpu", RenderOptions{})
	if plan := PlanSecrets(st.Dir, st.Secrets); plan[0].Action != "missing" {
		t.Fatalf("plan before the first deploy: %+v", plan)
	}
	first, err := EnsureSecrets(st.Dir, st.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	sdir := filepath.Join(st.Dir, SecretsDir)
	if fi, err := os.Stat(sdir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("secrets dir: %v %v", fi.Mode(), err)
	}
	contents := map[string][]byte{}
	inodes := map[string]uint64{}
	for i, s := range st.Secrets {
		if first[i].Action != "generated" {
			t.Errorf("%s: %s on the first run", s.Name, first[i].Action)
		}
		p := filepath.Join(sdir, s.Name)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %04o, want 0600", s.Name, fi.Mode().Perm())
		}
		if os.Geteuid() == 0 && int(fi.Sys().(*syscall.Stat_t).Uid) != s.UID {
			t.Errorf("%s: owner %d, want %d", s.Name, fi.Sys().(*syscall.Stat_t).Uid, s.UID)
		}
		data, _ := os.ReadFile(p)
		if len(bytes.TrimSpace(data)) < 16 {
			t.Errorf("%s: %d bytes", s.Name, len(data))
		}
		contents[s.Name] = data
		inodes[s.Name] = fi.Sys().(*syscall.Stat_t).Ino
	}
	// Root's URI for fireops users; the exporter and the backups each have
	// their own user, and never see root's password (the cpu config
	// publishes MongoDB on 27018).
	root := bytes.TrimSpace(contents["mongo-root-password"])
	for name, want := range map[string]string{
		"mongo-uri":            "mongodb://root:" + string(root) + "@127.0.0.1:27018/?authSource=admin&directConnection=true\n",
		"mongo-backup-uri":     "mongodb://fireops-backup:" + string(bytes.TrimSpace(contents["mongo-backup-password"])) + "@127.0.0.1:27018/?authSource=admin&directConnection=true\n",
		"mongodb-exporter.env": "MONGODB_URI=mongodb://mongodb-exporter:" + string(bytes.TrimSpace(contents["mongo-exporter-password"])) + "@mongodb:27017/admin?directConnection=true\n",
	} {
		if string(contents[name]) != want {
			t.Errorf("%s: %q, want %q", name, contents[name], want)
		}
	}
	if bytes.Equal(contents["mongo-backup-password"], contents["mongo-exporter-password"]) || len(contents["mongo-backup-password"]) != 49 {
		t.Error("the service accounts' passwords are not 24 random bytes each")
	}
	// The users' URI folder, which the hub mounts.
	if fi, err := os.Stat(filepath.Join(sdir, "mongo-users")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("secrets/mongo-users: %v %v", fi, err)
	}
	if string(contents["alertmanager-smtp-password"]) != "smtp-s3cret-for-tests" {
		t.Error("the SMTP password was not mirrored from stack.alerts.email.password_file")
	}

	// A second run changes nothing, not even the files' inodes.
	second, err := EnsureSecrets(st.Dir, st.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range st.Secrets {
		p := filepath.Join(sdir, s.Name)
		data, _ := os.ReadFile(p)
		fi, _ := os.Stat(p)
		if second[i].Action != "kept" || !bytes.Equal(data, contents[s.Name]) || fi.Sys().(*syscall.Stat_t).Ino != inodes[s.Name] {
			t.Errorf("%s: %s on the second run", s.Name, second[i].Action)
		}
	}

	// A random secret is never replaced, even if it was widened by hand
	// (only its mode is fixed); a derived one follows its source.
	pw := filepath.Join(sdir, "mongo-root-password")
	if err := os.WriteFile(pw, []byte("changed-by-the-admin\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	third, err := EnsureSecrets(st.Dir, st.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(pw)
	fi, _ := os.Stat(pw)
	if string(data) != "changed-by-the-admin\n" || fi.Mode().Perm() != 0o600 {
		t.Errorf("an existing secret was replaced or left readable: %q %04o", data, fi.Mode().Perm())
	}
	for i, s := range st.Secrets {
		if s.Name == "mongo-uri" && third[i].Action != "updated" {
			t.Errorf("mongo-uri: %s after the password changed", third[i].Action)
		}
	}
	uri, _ := os.ReadFile(filepath.Join(sdir, "mongo-uri"))
	if !strings.Contains(string(uri), ":changed-by-the-admin@") {
		t.Errorf("mongo-uri does not follow the password")
	}
	if env, _ := os.ReadFile(filepath.Join(sdir, "mongodb-exporter.env")); strings.Contains(string(env), "changed-by-the-admin") {
		t.Errorf("mongodb-exporter.env holds the root password")
	}
	for _, r := range third {
		if strings.Contains(r.Action+r.Note, "changed-by-the-admin") {
			t.Error("a result holds a secret")
		}
	}
}

// TestServicesMounting: the services to recreate for changed secret files
// are read from the rendered compose.yaml (Compose's secret names differ
// from the files': alertmanager_smtp_password is secrets/alertmanager-smtp-password).
func TestServicesMounting(t *testing.T) {
	t.Parallel()
	compose := []byte(`services:
  alertmanager:
    secrets: [alertmanager_smtp_password]
  mongodb:
    secrets:
      - mongo_root_password
      - source: mongo_keyfile
        target: keyfile
  exporter:
    secrets: [mongo_uri]
  grafana: {}
secrets:
  alertmanager_smtp_password: {file: ./secrets/alertmanager-smtp-password}
  mongo_root_password: {file: ./secrets/mongo-root-password}
  mongo_keyfile: {file: ./secrets/mongo-keyfile}
  mongo_uri: {file: ./secrets/mongodb-exporter.env}
`)
	for _, tc := range []struct {
		files []string
		want  string
	}{
		{[]string{"alertmanager-smtp-password"}, "[alertmanager]"},
		{[]string{"mongo-keyfile"}, "[mongodb]"},
		{[]string{"mongo-root-password", "mongodb-exporter.env"}, "[exporter mongodb]"},
		{[]string{"grafana-admin-password"}, "[]"},
	} {
		got, err := servicesMounting(compose, tc.files)
		if err != nil || fmt.Sprint(got) != tc.want {
			t.Errorf("servicesMounting(%v) = %v, %v; want %s", tc.files, got, err, tc.want)
		}
	}
}
