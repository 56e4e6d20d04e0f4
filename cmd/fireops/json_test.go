package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/firetech/fireops/internal/testenv"
	"github.com/firetech/fireops/pkg/gpucheck/gpuchecktest"
)

// The types below mirror docs/json.md (schema 1), field by field. They
// are declared here, not taken from the producing packages, so that an
// output that gains, loses or retypes a field fails TestJSONSchema until
// docs/json.md and these types follow it.

type jVersion struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Date      string `json:"date"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

type jInit struct {
	Config           string `json:"config"`
	Identity         string `json:"identity"`
	SigningKey       string `json:"signing_key"`
	Recipient        string `json:"recipient"`
	SigningPublicKey string `json:"signing_public_key"`
}

type jConfigCheck struct {
	File   string         `json:"file"`
	Config map[string]any `json:"config"`
	Files  []struct {
		Key    string `json:"key"`
		Path   string `json:"path"`
		Status string `json:"status"`
	} `json:"files"`
	Notes    []string `json:"notes"`
	Warnings []string `json:"warnings"`
}

type jPart struct {
	ID        string         `json:"id"`
	Kind      string         `json:"kind"`
	Name      string         `json:"name"`
	Object    string         `json:"object"`
	List      string         `json:"list"`
	Size      int64          `json:"size"`
	SHA256    string         `json:"sha256"`
	Stored    int64          `json:"stored"`
	Pieces    int            `json:"pieces"`
	Uploaded  int64          `json:"uploaded"`
	Entries   int64          `json:"entries"`
	Documents int64          `json:"documents"`
	Details   map[string]any `json:"details"`
	Reused    bool           `json:"reused"`
}

type jIDReason struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

type jSnapshot struct {
	ID           string    `json:"id"`
	Host         string    `json:"host"`
	Started      time.Time `json:"started"`
	Finished     time.Time `json:"finished"`
	Parts        []jPart   `json:"parts"`
	Destinations []struct {
		Name     string `json:"name"`
		Error    string `json:"error"`
		Uploaded int64  `json:"uploaded"`
		Reused   int    `json:"reused"`
		Stored   int64  `json:"stored"`
		Retries  int64  `json:"retries"`
	} `json:"destinations"`
	Skipped     []jIDReason `json:"skipped"`
	FailedParts []jIDReason `json:"failed_parts"`
}

type jSnapshots []struct {
	Destination string `json:"destination"`
	Error       string `json:"error"`
	Snapshots   []struct {
		ID          string      `json:"id"`
		Time        time.Time   `json:"time"`
		Complete    bool        `json:"complete"`
		Parts       int         `json:"parts"`
		Size        int64       `json:"size"`
		Problem     string      `json:"problem"`
		Modified    time.Time   `json:"modified"`
		Started     time.Time   `json:"started"`
		FailedParts int         `json:"failed_parts"`
		Failed      []jIDReason `json:"failed"`
		PartTags    []string    `json:"part_tags"`
		Only        bool        `json:"only"`
		Signer      string      `json:"signer"`
		Contents    *struct {
			Parts       []string `json:"parts"`
			Raw         int64    `json:"raw"`
			Stored      int64    `json:"stored"`
			Uploaded    int64    `json:"uploaded"`
			ReusedParts int      `json:"reused_parts"`
		} `json:"contents"`
	} `json:"snapshots"`
}

type jVerify []struct {
	Destination string   `json:"destination"`
	Snapshot    string   `json:"snapshot"`
	Level       string   `json:"level"`
	OK          bool     `json:"ok"`
	Parts       int      `json:"parts"`
	Bytes       int64    `json:"bytes"`
	Error       string   `json:"error"`
	Seconds     float64  `json:"seconds"`
	PartIDs     []string `json:"part_ids"`
	FailedParts []string `json:"failed_parts"`
	Rollback    string   `json:"rollback"`
}

type jRestore struct {
	Destination string `json:"destination"`
	Snapshot    string `json:"snapshot"`
	Parts       []struct {
		Part        string `json:"part"`
		Target      string `json:"target"`
		Size        int64  `json:"size"`
		Status      string `json:"status"`
		Error       string `json:"error"`
		Snapshot    string `json:"snapshot"`
		Destination string `json:"destination"`
	} `json:"parts"`
	Note  string `json:"note"`
	Stack *struct {
		Project    string   `json:"project"`
		Containers []string `json:"containers"`
		Running    []string `json:"running"`
		RunningWhy string   `json:"running_why"`
		Started    []string `json:"started"`
		Error      string   `json:"error"`
	} `json:"stack"`
}

type jRotate struct {
	DryRun       bool      `json:"dry_run"`
	Time         time.Time `json:"time"`
	Destinations []struct {
		Destination string `json:"destination"`
		Policy      string `json:"policy"`
		Grace       string `json:"incomplete_grace"`
		Snapshots   []struct {
			ID          string    `json:"id"`
			Time        time.Time `json:"time"`
			State       string    `json:"state"`
			Activity    time.Time `json:"activity"`
			Parts       []string  `json:"parts"`
			PartCount   int       `json:"part_count"`
			Only        bool      `json:"only"`
			FailedParts int       `json:"failed_parts"`
			Keep        bool      `json:"keep"`
			Reasons     []string  `json:"reasons"`
		} `json:"snapshots"`
		Parts             int `json:"parts"`
		RetiredParts      int `json:"retired_parts"`
		Kept              int `json:"kept"`
		Removed           int `json:"removed"`
		IncompleteRemoved int `json:"incomplete_removed"`
		Objects           struct {
			Total      int    `json:"total"`
			Referenced int    `json:"referenced"`
			Removed    int    `json:"removed"`
			FreedBytes int64  `json:"freed_bytes"`
			Young      int    `json:"young"`
			Skipped    string `json:"skipped"`
		} `json:"objects"`
		Error string `json:"error"`
	} `json:"destinations"`
}

type jDeployPlan struct {
	StackDir   string `json:"stack_dir"`
	RenderedTo string `json:"rendered_to"`
	Project    string `json:"project"`
	Files      []struct {
		Path   string `json:"path"`
		Action string `json:"action"`
	} `json:"files"`
	Secrets []struct {
		Name   string `json:"name"`
		Action string `json:"action"`
		Note   string `json:"note"`
	} `json:"secrets"`
	Services []string `json:"services"`
	Ports    []struct {
		Key     string `json:"key"`
		Service string `json:"service"`
		HostIP  string `json:"host_ip"`
		Port    int    `json:"port"`
	} `json:"ports"`
	HubImage      string `json:"hub_image"`
	NotebookImage string `json:"notebook_image"`
}

type jGPUCheck struct {
	Time       time.Time `json:"time"`
	Status     string    `json:"status"`
	OK         bool      `json:"ok"`
	Strict     bool      `json:"strict"`
	Thresholds struct {
		ExpectCount             int    `json:"expect_count"`
		MinDriver               string `json:"min_driver"`
		MaxTemperatureC         int    `json:"max_temperature_c"`
		RequireContainerRuntime bool   `json:"require_container_runtime"`
	} `json:"thresholds"`
	NVMLVersion       string `json:"nvml_version"`
	DriverVersion     string `json:"driver_version"`
	CUDADriverVersion string `json:"cuda_driver_version"`
	GPUs              []struct {
		Index            int      `json:"index"`
		Name             string   `json:"name"`
		UUID             string   `json:"uuid"`
		BusID            string   `json:"bus_id"`
		MemoryTotalBytes uint64   `json:"memory_total_bytes"`
		MemoryUsedBytes  uint64   `json:"memory_used_bytes"`
		TemperatureC     *int     `json:"temperature_c"`
		ThrottleReasons  []string `json:"throttle_reasons"`
		ECC              *struct {
			VolatileCorrected    uint64 `json:"volatile_corrected"`
			VolatileUncorrected  uint64 `json:"volatile_uncorrected"`
			AggregateCorrected   uint64 `json:"aggregate_corrected"`
			AggregateUncorrected uint64 `json:"aggregate_uncorrected"`
		} `json:"ecc"`
		RetiredPagesPending *bool `json:"retired_pages_pending"`
		RemappedRows        *struct {
			Corrected   int  `json:"corrected"`
			Uncorrected int  `json:"uncorrected"`
			Pending     bool `json:"pending"`
			Failure     bool `json:"failure"`
		} `json:"remapped_rows"`
		PersistenceMode *bool  `json:"persistence_mode"`
		MIGMode         string `json:"mig_mode"`
		ProcessesError  string `json:"processes_error"`
	} `json:"gpus"`
	ContainerRuntime *struct {
		ServerVersion  string   `json:"server_version"`
		Runtimes       []string `json:"runtimes"`
		DefaultRuntime string   `json:"default_runtime"`
		CDISpecDirs    []string `json:"cdi_spec_dirs"`
		CDIDevices     []string `json:"cdi_devices"`
	} `json:"container_runtime"`
	Checks []struct {
		Name      string `json:"name"`
		GPU       *int   `json:"gpu"`
		UUID      string `json:"uuid"`
		Status    string `json:"status"`
		Value     string `json:"value"`
		Threshold string `json:"threshold"`
		Message   string `json:"message"`
		Hint      string `json:"hint"`
	} `json:"checks"`
	Users []struct {
		User            string `json:"user"`
		MemoryUsedBytes uint64 `json:"memory_used_bytes"`
		Processes       []struct {
			PID                  uint32   `json:"pid"`
			GPU                  int      `json:"gpu"`
			UUID                 string   `json:"uuid"`
			MemoryUsedBytes      *uint64  `json:"memory_used_bytes"`
			SMUtilizationPercent *float64 `json:"sm_utilization_percent"`
			GPUInstance          *uint32  `json:"gpu_instance"`
			ComputeInstance      *uint32  `json:"compute_instance"`
			ContainerID          string   `json:"container_id"`
			Container            string   `json:"container"`
			User                 string   `json:"user"`
			Server               string   `json:"server"`
		} `json:"processes"`
	} `json:"users"`
}

type jUsersList struct {
	Users []struct {
		Name          string     `json:"name"`
		Email         string     `json:"email"`
		SignedUp      bool       `json:"signed_up"`
		Approved      bool       `json:"approved"`
		Admin         bool       `json:"admin"`
		Has2FA        bool       `json:"has_2fa"`
		InHub         bool       `json:"in_hub"`
		ServerRunning bool       `json:"server_running"`
		LastActivity  *time.Time `json:"last_activity"`
		Volume        string     `json:"volume"`
	} `json:"users"`
	Warnings []string `json:"warnings"`
}

// decodeStrict decodes out into v, refusing unknown fields and trailing
// data, and refusing strings that hold a number or a JSON list (except at
// the keys docs/json.md documents as strings in their own notation).
func decodeStrict(t *testing.T, name, out string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Errorf("%s: the output does not decode into the type of docs/json.md: %v\n%s", name, err, out)
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Errorf("%s: data after the JSON value", name)
	}
	var generic any
	if err := json.Unmarshal([]byte(out), &generic); err != nil {
		t.Fatal(err)
	}
	for _, p := range stringlyTyped(generic, "") {
		t.Errorf("%s: %s holds a number or a list as a string", name, p)
	}
}

// numberLike and listLike match string values that should have been a
// JSON number or list.
var (
	numberLike = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)
	listLike   = regexp.MustCompile(`^\[.*\]$`)
)

// stringKeys are the keys whose string values may look like numbers:
// versions ("550.54", "12.4") and a check's measured value as text.
var stringKeys = map[string]bool{
	"version": true, "driver_version": true, "cuda_driver_version": true, "nvml_version": true,
	"min_driver": true, "server_version": true, "value": true, "threshold": true,
}

// stringlyTyped returns the paths of string values in v that hold a
// number or a JSON list.
func stringlyTyped(v any, path string) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if _, ok := e.(string); ok && stringKeys[k] {
				continue
			}
			out = append(out, stringlyTyped(e, path+"."+k)...)
		}
	case []any:
		for i, e := range v {
			out = append(out, stringlyTyped(e, fmt.Sprintf("%s[%d]", path, i))...)
		}
	case string:
		if numberLike.MatchString(v) || (listLike.MatchString(v) && json.Valid([]byte(v))) {
			out = append(out, fmt.Sprintf("%s (%q)", path, v))
		}
	}
	return out
}

// TestJSONSchema runs every command that prints --json on local fixtures
// and decodes each output strictly into the types of docs/json.md.
func TestJSONSchema(t *testing.T) {
	t.Parallel()
	cfg := localFixture(t, "      exclude: [\"*.tmp\"]\n", "      exclude: [\"*.tmp\"]\n  sqlite:\n    - {name: hub, path: HUBDB}\n")
	dir := filepath.Dir(cfg)
	// The sqlite part: a database of one table, so that the details hold
	// counts (rows.t, page_count) besides the files part's lists (roots).
	writeSQLite(t, filepath.Join(dir, "hub.sqlite"))
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, bytes.Replace(raw, []byte("HUBDB"), []byte(filepath.Join(dir, "hub.sqlite")), 1), 0o600); err != nil {
		t.Fatal(err)
	}

	check := func(v any, args ...string) {
		t.Helper()
		out, errs, code := fireopsIn(t, cfg, append([]string{"--json", "-q"}, args...)...)
		if code != 0 {
			t.Fatalf("fireops %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
		decodeStrict(t, strings.Join(args, " "), out, v)
	}
	check(&jVersion{}, "version")
	check(&jInit{}, "init", "--dir", filepath.Join(dir, "other"), "--host", "gpu02")
	check(&jConfigCheck{}, "config", "check")

	var snap jSnapshot
	check(&snap, "snapshot")
	if len(snap.Parts) != 2 {
		t.Fatalf("snapshot: %d parts, want files and sqlite", len(snap.Parts))
	}
	for _, p := range snap.Parts {
		switch p.Kind {
		case "files":
			if r, ok := p.Details["roots"].([]any); !ok || len(r) != 1 {
				t.Errorf("files details roots = %#v, want a list", p.Details["roots"])
			}
			if _, ok := p.Details["bytes"].(float64); !ok {
				t.Errorf("files details bytes = %#v, want a number", p.Details["bytes"])
			}
		case "sqlite":
			if _, ok := p.Details["rows.t"].(float64); !ok {
				t.Errorf("sqlite details rows.t = %#v, want a number", p.Details["rows.t"])
			}
		}
	}
	check(&jSnapshot{}, "snapshot") // the second: parts reused
	var ls jSnapshots
	check(&ls, "snapshots")
	if len(ls) != 1 || len(ls[0].Snapshots) != 2 || ls[0].Snapshots[0].Contents == nil || len(ls[0].Snapshots[0].Contents.Parts) != 2 {
		t.Errorf("snapshots: %+v", ls)
	}
	check(&jVerify{}, "verify", "--all")
	check(&jVerify{}, "verify", "latest", "--level", "full")
	check(&jRestore{}, "restore", "latest", "--part", "files:stack", "--to", filepath.Join(dir, "restored"), "--dry-run")
	check(&jRestore{}, "restore", "latest", "--part", "files:stack", "--to", filepath.Join(dir, "restored"))
	check(&jRestore{}, "restore", "latest", "--all", "--dry-run", "--force")
	check(&jRotate{}, "rotate", "--dry-run")
	check(&jRotate{}, "rotate")
	var plan jDeployPlan
	check(&plan, "deploy", "--dry-run")
	if plan.RenderedTo != "" {
		os.RemoveAll(plan.RenderedTo)
	}

	// gpu check on go-nvml's mock DGX A100 (the command's own run, with
	// the library injected).
	var stdout, stderr bytes.Buffer
	a := &app{configPath: cfg, jsonOut: true, stdout: &stdout, stderr: &stderr, log: slog.New(slog.NewTextHandler(&stderr, nil))}
	_ = a.runGPUCheck(context.Background(), gpuCheckOptions{nvml: gpuchecktest.HealthyDGXA100(), engine: gpuEngine{runtimes: []string{"nvidia"}}, noMetrics: true})
	decodeStrict(t, "gpu check", stdout.String(), &jGPUCheck{})
}

// writeSQLite creates a database of one table t of two rows.
func writeSQLite(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('a'), ('b')"); err != nil {
		t.Fatal(err)
	}
}

// TestJSONUsersList decodes `users list --json` against the test hub.
func TestJSONUsersList(t *testing.T) {
	t.Parallel()
	apiURL, token := testenv.RequireHub(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "fireops.yaml")
	y := fmt.Sprintf("hub:\n  api_url: %s\n  token_file: %s\n  db_path: %s\n", apiURL, filepath.Join(dir, "token"), testenv.Env(testenv.EnvHubDB))
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	out := mustFireopsIn(t, cfg, "--json", "-q", "users", "list")
	decodeStrict(t, "users list", out, &jUsersList{})
}

// TestStringlyTyped: the check itself finds numbers and lists in strings.
func TestStringlyTyped(t *testing.T) {
	t.Parallel()
	var v any
	if err := json.Unmarshal([]byte(`{"bytes": "200027", "roots": "[\"/srv/data\"]", "ok": "ok", "n": 3, "version": "1.2", "l": [{"x": "-4.5"}]}`), &v); err != nil {
		t.Fatal(err)
	}
	got := stringlyTyped(v, "")
	if len(got) != 3 {
		t.Errorf("found %v, want .bytes, .roots and .l[0].x", got)
	}
}
