package deploy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/firetech/fireops/internal/testenv"
)

// TestGPUSmokeScripts: scripts/gpu-smoke.sh and scripts/gpu-smoke-hub.sh
// parse (bash -n) and are shellcheck-clean.
func TestGPUSmokeScripts(t *testing.T) {
	t.Parallel()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	scripts := []string{filepath.Join(root, "scripts", "gpu-smoke.sh"), filepath.Join(root, "scripts", "gpu-smoke-hub.sh")}
	t.Run("bash", func(t *testing.T) {
		bash := testenv.RequireTool(t, "bash")
		for _, s := range scripts {
			if out, err := exec.Command(bash, "-n", s).CombinedOutput(); err != nil {
				t.Errorf("bash -n %s: %v\n%s", s, err, out)
			}
		}
	})
	t.Run("shellcheck", func(t *testing.T) {
		sc := testenv.RequireTool(t, "shellcheck")
		if out, err := exec.Command(sc, scripts...).CombinedOutput(); err != nil {
			t.Errorf("shellcheck: %v\n%s", err, out)
		}
	})
}

// The host of the hub smoke test: GPU 0 whole, GPU 1 in MIG mode with two
// instances.
const (
	smokeHostList = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaaaaaa-0000-0000-0000-000000000000)\n" +
		"GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-bbbbbbbb-0000-0000-0000-000000000000)\n" +
		"  MIG 3g.20gb     Device  0: (UUID: MIG-cccccccc-0000-0000-0000-000000000000)\n" +
		"  MIG 3g.20gb     Device  1: (UUID: MIG-dddddddd-0000-0000-0000-000000000000)\n"
	smokeGPU0 = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaaaaaa-0000-0000-0000-000000000000)\n"
	smokeMIG0 = "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-bbbbbbbb-0000-0000-0000-000000000000)\n" +
		"  MIG 3g.20gb     Device  0: (UUID: MIG-cccccccc-0000-0000-0000-000000000000)\n"
)

// fakeDocker answers the docker commands gpu-smoke-hub.sh runs from the
// files the fake hub writes into $FAKE_STATE.
const fakeDocker = `#!/usr/bin/env bash
st=$FAKE_STATE
case $1 in
ps) cat "$st/running" 2>/dev/null || true ;;
container) [ -e "$st/c-$3.json" ] ;;
volume) [ "$2" = rm ] || [ -e "$st/v-$3" ] ;;
inspect) cat "$st/c-$2.json" 2>/dev/null || { echo "Error: No such object: $2" >&2; exit 1; } ;;
exec)
	name=$2
	shift 2
	case $1 in
	nvidia-smi)
		[ -e "$st/smi-$name" ] || { echo 'exec: "nvidia-smi": executable file not found in $PATH' >&2; exit 126; }
		cat "$st/smi-$name" ;;
	python)
		if [ "$2" = -c ]; then echo --torch; else echo "$name $*" >>"$st/cuda-checks"; echo "fireops-cuda-check: passed"; fi ;;
	esac ;;
rm) rm -f "$st/c-$3.json" "$st/smi-$3"; echo "$3" >>"$st/removed" ;;
*) echo "fake docker: $*" >&2; exit 9 ;;
esac
`

// smokeServer is what the fake hub gives a user's server: its device
// requests (as the Engine reports them) and what nvidia-smi -L shows in it.
type smokeServer struct {
	requests []map[string]any
	inside   string
}

// fakeSmokeHub is the hub's REST API as gpu-smoke-hub.sh uses it.
type fakeSmokeHub struct {
	t       *testing.T
	state   string
	servers map[string]smokeServer
	exists  map[string]bool

	mu      sync.Mutex
	started map[string]bool
	options map[string]string
	deleted []string
}

func (h *fakeSmokeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "token smoke-token" {
		http.Error(w, "bad token", http.StatusForbidden)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	rest, ok := strings.CutPrefix(r.URL.Path, "/hub/api/users/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	name, server := strings.CutSuffix(rest, "/server")
	write := func(p, data string) {
		if err := os.WriteFile(filepath.Join(h.state, p), []byte(data), 0o600); err != nil {
			h.t.Error(err)
		}
	}
	switch {
	case r.Method == "POST" && !server:
		if h.exists[name] {
			w.WriteHeader(http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusCreated)
	case r.Method == "POST" && server:
		body, _ := io.ReadAll(r.Body)
		h.options[name] = string(body)
		s := h.servers[name]
		inspect, _ := json.Marshal([]any{map[string]any{"HostConfig": map[string]any{"DeviceRequests": s.requests}}})
		write("c-jupyter-"+name+".json", string(inspect))
		if s.inside != "" {
			write("smi-jupyter-"+name, s.inside)
		}
		f, err := os.OpenFile(filepath.Join(h.state, "running"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err == nil {
			_, err = f.WriteString("jupyter-" + name + "\n")
			f.Close()
		}
		if err != nil {
			h.t.Error(err)
		}
		h.started[name] = true
		w.WriteHeader(http.StatusCreated)
	case r.Method == "GET":
		servers := map[string]any{}
		if h.started[name] {
			servers[""] = map[string]any{"ready": true}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"name": name, "servers": servers})
	case r.Method == "DELETE" && server:
		h.started[name] = false
		w.WriteHeader(http.StatusNoContent)
	case r.Method == "DELETE":
		h.deleted = append(h.deleted, name)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

func ids(ids ...string) []map[string]any {
	return []map[string]any{{"Driver": "nvidia", "Count": 0, "DeviceIDs": ids, "Capabilities": [][]string{{"gpu"}}}}
}

// TestGPUSmokeHub runs scripts/gpu-smoke-hub.sh against a fake hub, a fake
// Docker CLI and a fake nvidia-smi: the comparisons it makes and its exit
// status.
func TestGPUSmokeHub(t *testing.T) {
	t.Parallel()
	bash := testenv.RequireTool(t, "bash")
	testenv.RequireTool(t, "python3")
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "scripts", "gpu-smoke-hub.sh")
	for _, tc := range []struct {
		name    string
		servers map[string]smokeServer
		exists  map[string]bool
		args    []string
		fail    bool
		want    []string
	}{
		{"own GPUs", map[string]smokeServer{
			"gpusmokea": {ids("0"), smokeGPU0},
			"gpusmokeb": {ids("MIG-cccccccc-0000-0000-0000-000000000000"), smokeMIG0},
		}, nil, []string{"--options-b", `{"gpu_profile": "mig"}`}, false, []string{
			"gpu-smoke: hub: the host has 2 GPUs, 3 usable devices",
			"ok gpusmokea: sees exactly the GPUs the hub assigned: GPU 0 (GPU-aaaaaaaa-0000-0000-0000-000000000000)",
			"ok gpusmokeb: sees exactly the GPUs the hub assigned: MIG 1:0 (MIG-cccccccc-0000-0000-0000-000000000000)",
			"ok gpusmokea: the image's CUDA check passes on its GPUs (--torch)",
			"removed gpusmokea, gpusmokeb",
			"gpu-smoke: hub: passed",
		}},
		{"sees more than assigned", map[string]smokeServer{
			"gpusmokea": {ids("0"), smokeHostList},
			"gpusmokeb": {ids("1"), "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-bbbbbbbb-0000-0000-0000-000000000000)\n" + smokeHostList[strings.Index(smokeHostList, "  MIG"):]},
		}, nil, nil, true, []string{
			"FAIL gpusmokea: assigned GPU 0 (GPU-aaaaaaaa-0000-0000-0000-000000000000) but sees GPU 0 (GPU-aaaaaaaa-0000-0000-0000-000000000000), MIG 1:0",
			"ok gpusmokeb: sees exactly the GPUs the hub assigned: MIG 1:0 (MIG-cccccccc-0000-0000-0000-000000000000), MIG 1:1 (MIG-dddddddd-0000-0000-0000-000000000000)",
			"gpu-smoke: hub: 1 failed",
		}},
		{"shared", map[string]smokeServer{
			"gpusmokea": {ids("0"), smokeGPU0},
			"gpusmokeb": {ids("GPU-aaaaaaaa-0000-0000-0000-000000000000"), smokeGPU0},
		}, nil, nil, true, []string{"FAIL gpusmokea and gpusmokeb share GPU 0 (GPU-aaaaaaaa-0000-0000-0000-000000000000) although no other user server ran"}},
		{"shared on purpose", map[string]smokeServer{
			"gpusmokea": {ids("0"), smokeGPU0},
			"gpusmokeb": {ids("0"), smokeGPU0},
		}, nil, []string{"--allow-shared"}, false, []string{"passed"}},
		{"no GPU for B", map[string]smokeServer{
			"gpusmokea": {[]map[string]any{{"Driver": "nvidia", "Count": -1, "DeviceIDs": nil}}, smokeHostList},
			"gpusmokeb": {nil, ""},
		}, nil, nil, false, []string{
			"ok gpusmokea: sees exactly the GPUs the hub assigned: GPU 0 (GPU-aaaaaaaa-0000-0000-0000-000000000000), MIG 1:0",
			"ok gpusmokeb: sees exactly the GPUs the hub assigned: no GPU",
		}},
		{"a GPU without assignment", map[string]smokeServer{
			"gpusmokea": {ids("0"), smokeGPU0},
			"gpusmokeb": {nil, smokeMIG0},
		}, nil, nil, true, []string{"FAIL gpusmokeb: assigned no GPU but sees MIG 1:0"}},
		{"no GPU at all", map[string]smokeServer{"gpusmokea": {nil, ""}, "gpusmokeb": {nil, ""}}, nil, nil, true,
			[]string{"FAIL neither server got a GPU: nothing was checked"}},
		{"user exists", map[string]smokeServer{"gpusmokeb": {ids("0"), smokeGPU0}}, map[string]bool{"gpusmokea": true}, nil, true,
			[]string{"FAIL gpusmokea: the user, its container or its volume exists already"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			state, bin, out := filepath.Join(dir, "state"), filepath.Join(dir, "bin"), filepath.Join(dir, "out")
			for _, d := range []string{state, bin} {
				if err := os.Mkdir(d, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			hub := &fakeSmokeHub{t: t, state: state, servers: tc.servers, exists: tc.exists,
				started: map[string]bool{}, options: map[string]string{}}
			srv := httptest.NewServer(hub)
			defer srv.Close()
			token, cfg := filepath.Join(dir, "token"), filepath.Join(dir, "fireops.yaml")
			files := map[string]string{
				token:                            "smoke-token\n",
				cfg:                              "# a config file the script only reads through fireops\n",
				filepath.Join(bin, "docker"):     fakeDocker,
				filepath.Join(bin, "nvidia-smi"): "#!/bin/sh\n[ \"$1\" = -L ] && printf '%s' '" + smokeHostList + "'\n",
				filepath.Join(bin, "fireops"): "#!/bin/sh\n[ \"$3 $4 $5\" = \"config check --json\" ] || exit 9\n" +
					`echo '{"config": {"hub": {"api_url": "` + srv.URL + `/hub/api", "token_file": "` + token + `"}, "stack": {"dir": "/nonexistent"}}}'` + "\n",
			}
			for p, data := range files {
				if err := os.WriteFile(p, []byte(data), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(bash, append([]string{script, "--config", cfg}, tc.args...)...)
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FAKE_STATE="+state, "OUT="+out, "FIREOPS=fireops")
			output, err := cmd.CombinedOutput()
			if failed := err != nil; failed != tc.fail {
				t.Errorf("failed = %v (%v), want %v\n%s", failed, err, tc.fail, output)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(output), w) {
					t.Errorf("output lacks %q:\n%s", w, output)
				}
			}
			if tc.name != "own GPUs" {
				return
			}
			// The options reached the hub, the check ran with the GPUs,
			// and the smoke users are gone.
			hub.mu.Lock()
			defer hub.mu.Unlock()
			if hub.options["gpusmokeb"] != `{"gpu_profile": "mig"}` || hub.options["gpusmokea"] != "{}" {
				t.Errorf("user_options sent: %v", hub.options)
			}
			checks, _ := os.ReadFile(filepath.Join(state, "cuda-checks"))
			if want := "jupyter-gpusmokea python /opt/fireops/cuda-check.py --require-gpu --torch\njupyter-gpusmokeb python /opt/fireops/cuda-check.py --require-gpu --torch\n"; string(checks) != want {
				t.Errorf("CUDA checks run:\n%s\nwant\n%s", checks, want)
			}
			slices.Sort(hub.deleted)
			if !slices.Equal(hub.deleted, []string{"gpusmokea", "gpusmokeb"}) {
				t.Errorf("hub users deleted: %v", hub.deleted)
			}
			if left, _ := filepath.Glob(filepath.Join(state, "c-*")); len(left) != 0 {
				t.Errorf("containers left: %v", left)
			}
			if summary, err := os.ReadFile(filepath.Join(out, "summary.txt")); err != nil || !strings.Contains(string(summary), "gpu-smoke: hub: passed") {
				t.Errorf("summary.txt: %v\n%s", err, summary)
			}
		})
	}
}
