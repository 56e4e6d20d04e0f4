package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestDocker(t *testing.T) {
	t.Parallel()
	host := RequireDocker(t)
	c, base, err := DockerHTTPClient(host)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(base + "/version")
	if err != nil {
		t.Fatalf("GET /version: %v", err)
	}
	defer resp.Body.Close()
	var v struct{ Version, APIVersion string }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /version: HTTP %d, %v", resp.StatusCode, err)
	}
	if v.APIVersion == "" {
		t.Fatalf("GET /version: no ApiVersion in the answer")
	}
	t.Logf("Docker Engine %s, API %s at %s", v.Version, v.APIVersion, host)
}

func TestMongo(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var uri, db string
	// Cleanups run last-registered first: this one runs after RequireMongo's
	// drop and checks that the database is gone.
	t.Cleanup(func() {
		if db == "" || t.Failed() {
			return
		}
		c, err := mongoClient(uri)
		if err != nil {
			t.Error(err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		names, err := c.ListDatabaseNames(ctx, bson.D{})
		if err != nil {
			t.Errorf("listing databases: %v", err)
			return
		}
		if slices.Contains(names, db) {
			t.Errorf("test database %s still exists after the test", db)
		}
	})

	uri, db = RequireMongo(t)
	_, other := RequireMongo(t)
	if db == other || !strings.HasPrefix(db, "t_") {
		t.Fatalf("database names %q and %q: want two distinct t_ names", db, other)
	}

	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })

	coll := client.Database(db).Collection("docs")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "n", Value: int32(42)}, {Key: "s", Value: "fireops"}}); err != nil {
		t.Fatalf("InsertOne: %v", err)
	}
	var got struct {
		ID string `bson:"_id"`
		N  int32  `bson:"n"`
		S  string `bson:"s"`
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "n", Value: int32(42)}}).Decode(&got); err != nil {
		t.Fatalf("FindOne: %v", err)
	}
	if got.ID != "a" || got.N != 42 || got.S != "fireops" {
		t.Fatalf("FindOne = %+v, want {a 42 fireops}", got)
	}
}

func TestHub(t *testing.T) {
	t.Parallel()
	api, token := RequireHub(t)
	req, err := http.NewRequest(http.MethodGet, api+"/users", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "token "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /users: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /users: HTTP %d: %s", resp.StatusCode, body)
	}
	var users []map[string]any
	if err := json.Unmarshal(body, &users); err != nil {
		t.Fatalf("GET /users: %v: %s", err, body)
	}
	t.Logf("hub has %d users", len(users))

	if path := Env(EnvHubDB); path != "" {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s: %v", EnvHubDB, err)
		}
	}
}

func TestTools(t *testing.T) {
	t.Parallel()
	// The tools of design §10 that scripts/test-deps.sh installs.
	for _, name := range []string{"age", "zstd", "tar", "sqlite3", "promtool", "amtool", "prometheus-node-exporter", "restic", "docker"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if path := RequireTool(t, name); path == "" {
				t.Fatal("RequireTool returned an empty path")
			}
		})
	}
}

// recorder is a testing.TB that records Skipf and Fatalf instead of
// stopping the test.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) { r.skipped = fmt.Sprintf(format, args...) }

func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestUnavailableSkipsOrFails(t *testing.T) {
	// Not parallel: it sets CI.
	for _, ci := range []string{"", "false", "true"} {
		t.Run("CI="+ci, func(t *testing.T) {
			t.Setenv("CI", ci)
			r := &recorder{TB: t}
			if got := RequireTool(r, "fireops-no-such-tool"); got != "" {
				t.Fatalf("RequireTool = %q, want empty", got)
			}
			msg, other := r.skipped, r.failed
			if ci == "true" {
				msg, other = r.failed, r.skipped
			}
			if other != "" {
				t.Errorf("unexpected message %q", other)
			}
			for _, want := range []string{"fireops-no-such-tool", "scripts/test-deps.sh"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q does not name %q", msg, want)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("message %q is not one line", msg)
			}
		})
	}
}

func TestParseEnvFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     map[string]string
		err      string
	}{
		{name: "empty", in: "", want: map[string]string{}},
		{name: "comments and blanks", in: "# header\n\n   # indented\n", want: map[string]string{}},
		{
			name: "as test-deps writes it",
			in: "# generated\n" +
				"export FIREOPS_TEST_MONGO_URI='mongodb://127.0.0.1:27117/'\n" +
				"export FIREOPS_TEST_HUB_TOKEN='0123abcd'\n" +
				"export DOCKER_HOST='unix:///var/run/docker.sock'\n",
			want: map[string]string{
				"FIREOPS_TEST_MONGO_URI": "mongodb://127.0.0.1:27117/",
				"FIREOPS_TEST_HUB_TOKEN": "0123abcd",
				"DOCKER_HOST":            "unix:///var/run/docker.sock",
			},
		},
		{name: "without export", in: "A=1\n", want: map[string]string{"A": "1"}},
		{name: "tab after export", in: "export\tA=1", want: map[string]string{"A": "1"}},
		{name: "variable named export_x", in: "export_x=1", want: map[string]string{"export_x": "1"}},
		{name: "surrounding blanks", in: "  export A=b  \n", want: map[string]string{"A": "b"}},
		{name: "empty value", in: "A=\nB=''\nC=\"\"", want: map[string]string{"A": "", "B": "", "C": ""}},
		{name: "double quotes", in: `A="a b \"c\" \\ \$x"`, want: map[string]string{"A": `a b "c" \ $x`}},
		{name: "backslash kept before other chars in double quotes", in: `A="a\nb"`, want: map[string]string{"A": `a\nb`}},
		{name: "single quotes are literal", in: `A='a "b" \n $x'`, want: map[string]string{"A": `a "b" \n $x`}},
		{name: "concatenated quoting", in: `A='it'\''s'"!"x`, want: map[string]string{"A": "it's!x"}},
		{name: "escaped space", in: `A=a\ b`, want: map[string]string{"A": "a b"}},
		{name: "trailing comment", in: "A='x' # note", want: map[string]string{"A": "x"}},
		{name: "hash inside value", in: "A=a#b", want: map[string]string{"A": "a#b"}},
		{name: "last wins", in: "A=1\nA=2", want: map[string]string{"A": "2"}},
		{name: "no equals", in: "export A", err: "line 1: want KEY=VALUE"},
		{name: "bad name", in: "1A=x", err: `line 1: invalid variable name "1A"`},
		{name: "bad name with dash", in: "\nA-B=x", err: `line 2: invalid variable name "A-B"`},
		{name: "unterminated single", in: "A='x", err: "unterminated single quote"},
		{name: "unterminated double", in: `A="x`, err: "unterminated double quote"},
		{name: "expansion", in: "A=$HOME", err: "expansion"},
		{name: "expansion in double quotes", in: `A="${HOME}"`, err: "expansion"},
		{name: "command substitution", in: "A=`id`", err: "expansion"},
		{name: "two words", in: "A=a b", err: "after the value"},
		{name: "operator", in: "A=a;b", err: "unexpected"},
		{name: "trailing backslash", in: `A=a\`, err: "trailing backslash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseEnvFile(strings.NewReader(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseEnvFile(%q) error = %v, want one containing %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseEnvFile(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("parseEnvFile(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestModulePath(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"module github.com/firetech/fireops\n\ngo 1.26\n":     "github.com/firetech/fireops",
		"// c\nmodule \"github.com/firetech/fireops\" // x\n": "github.com/firetech/fireops",
		"module github.com/firetech/fireops/tools/ferretdb":   "github.com/firetech/fireops/tools/ferretdb",
		"modulex foo\n": "",
		"go 1.26\n":     "",
	}
	for in, want := range tests {
		if got := modulePath([]byte(in)); got != want {
			t.Errorf("modulePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRepoRoot(t *testing.T) {
	t.Parallel()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root + "/internal/testenv/testenv.go"); err != nil {
		t.Fatalf("RepoRoot() = %s: %v", root, err)
	}
}

// TestCondition: a missing component is a skip locally and an error under
// CI (a script guarded by it must never pass by skipping in CI).
func TestCondition(t *testing.T) {
	missing := errors.New("not installed")
	for _, tc := range []struct {
		ci      string
		err     error
		want    bool
		wantErr bool
	}{
		{"", nil, true, false},
		{"true", nil, true, false},
		{"", missing, false, false},
		{"false", missing, false, false},
		{"true", missing, false, true},
	} {
		t.Setenv("CI", tc.ci)
		got, err := Condition("age", tc.err)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("CI=%q err=%v: Condition = %v, %v", tc.ci, tc.err, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), "age unavailable") {
			t.Errorf("error does not name the component: %v", err)
		}
	}
}
