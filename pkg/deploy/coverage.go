package deploy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/firetech/fireops/pkg/config"
	"github.com/firetech/fireops/pkg/users"
)

// UserVolumePrefix starts the name of every user's Docker volume:
// DockerSpawner mounts jupyterhub-user-{username} into each user's server
// (templates/hub/jupyterhub_config.py.tmpl).
const UserVolumePrefix = "jupyterhub-user-"

// Coverage is what `fireops config check` says of the stack's data: what
// no source backs up, whether alerts reach anyone, and which sources
// `fireops deploy` has not created yet.
type Coverage struct {
	// Uncovered has one line per part of the stack's data that no source
	// backs up, naming the source to add, and one when stack.alerts has no
	// receiver (the alerts would reach no one). config check prints each
	// as a WARNING.
	Uncovered []string `json:"uncovered"`
	// NotDeployed has one line per file or volume a source (or
	// hub.token_file) names that does not exist yet because the stack is
	// not deployed, or not deployed with these settings.
	NotDeployed []string `json:"not_deployed"`
}

// sampleUsers are user names the users' volumes are checked with: a
// source covers the users' volumes when its globs take every one of them.
var sampleUsers = []string{"ada", "bob.smith", "eve-2", "x", "0@lab"}

// CheckCoverage compares the sources of cfg with the stack that `fireops
// deploy` renders from cfg: the hub database, MongoDB, every user's volume
// and the stack folder must each be backed up by a source. It checks only
// a stack host, one whose config has a stack: section or whose stack.dir
// holds a deployed stack; for any other config the Coverage is empty. It
// reads the config file again (to see whether it has a stack: section) and
// looks at stack.dir, never at Docker.
func CheckCoverage(cfg *config.Config) (*Coverage, error) {
	cov := &Coverage{Uncovered: []string{}, NotDeployed: []string{}}
	s := cfg.Stack
	if s.Dir == "" {
		return cov, nil
	}
	deployed := exists(filepath.Join(s.Dir, "compose.yaml"))
	section, err := hasStackSection(cfg.File)
	if err != nil {
		return nil, err
	}
	if !section && !deployed {
		return cov, nil
	}
	notYet := "stack not deployed yet: run `fireops deploy`"
	secrets := map[string]bool{}
	for _, sp := range secretSpecs(cfg) {
		secrets[filepath.Join(s.Dir, SecretsDir, sp.Name)] = true
	}
	// A file deploy writes into stack.dir/secrets that does not exist yet,
	// or that deploy never writes with these settings.
	deployFile := func(key, name, never string) {
		switch {
		case !cfg.WrittenByDeploy(name) || exists(name):
		case !secrets[name]:
			cov.Uncovered = append(cov.Uncovered, fmt.Sprintf("%s: %s does not exist and `fireops deploy` %s", key, name, never))
		case deployed:
			cov.NotDeployed = append(cov.NotDeployed, fmt.Sprintf("%s: %s does not exist yet: run `fireops deploy` again to write it", key, name))
		default:
			cov.NotDeployed = append(cov.NotDeployed, fmt.Sprintf("%s: %s does not exist yet: %s", key, name, notYet))
		}
	}
	// The backup account's URI (least privilege), which sources.mongo
	// should name; root's URI (mongo-uri) works too.
	mongoURI := filepath.Join(s.Dir, SecretsDir, MongoBackupURIFile)
	rootURI := filepath.Join(s.Dir, SecretsDir, users.MongoAdminURIFile)

	// The hub database, in its volume (or on the host with hub.db_path).
	hubDB := -1
	for i, src := range cfg.Sources.SQLite {
		if (src.Volume == cfg.Hub.DBVolume && path.Clean(src.File) == path.Clean(cfg.Hub.DBFile)) ||
			(cfg.Hub.DBPath != "" && src.Path == cfg.Hub.DBPath) {
			hubDB = i
			break
		}
	}
	if hubDB < 0 {
		raw := ""
		if v := cfg.Sources.Volumes; v != nil && matchAny(v.Include, cfg.Hub.DBVolume) && !matchAny(v.Exclude, cfg.Hub.DBVolume) {
			raw = " (sources.volumes copies the live file raw, which can be corrupt)"
		}
		cov.Uncovered = append(cov.Uncovered, fmt.Sprintf("the hub database (%s in volume %s) is not backed up%s: add to sources: sqlite: [{name: jupyterhub, volume: %s, file: %s}]",
			cfg.Hub.DBFile, cfg.Hub.DBVolume, raw, cfg.Hub.DBVolume, cfg.Hub.DBFile))
	} else if !deployed && cfg.Sources.SQLite[hubDB].Volume != "" {
		cov.NotDeployed = append(cov.NotDeployed, fmt.Sprintf("sources.sqlite[%d]: the hub creates its database in volume %s when it first starts: %s", hubDB, cfg.Hub.DBVolume, notYet))
	}

	// MongoDB, dumped through a URI.
	switch m := cfg.Sources.Mongo; {
	case m == nil:
		fix := ""
		if s.Ports.MongoDB == 0 {
			fix = ", and set stack.ports.mongodb (deploy writes that file only while MongoDB is published on 127.0.0.1)"
		}
		cov.Uncovered = append(cov.Uncovered, fmt.Sprintf("MongoDB (volume %s) is not backed up: add to sources: mongo: {uri_file: %s} (written by `fireops deploy`)%s", s.Mongo.Volume, mongoURI, fix))
	case (m.URIFile == mongoURI || m.URIFile == rootURI) && s.Ports.MongoDB == 0:
		// A URI file left from an earlier deploy still names the port
		// MongoDB is no longer published on, and deploy no longer updates it.
		cov.Uncovered = append(cov.Uncovered, fmt.Sprintf("MongoDB is not backed up: sources.mongo.uri_file is %s, which `fireops deploy` writes and keeps current only while stack.ports.mongodb is set (it is 0): set stack.ports.mongodb: 27017", m.URIFile))
	case m.URIFile != "":
		deployFile("sources.mongo.uri_file", m.URIFile, "writes no such file (MongoDB's URI is "+mongoURI+")")
	}

	// Every user's volume.
	if v := cfg.Sources.Volumes; v == nil {
		cov.Uncovered = append(cov.Uncovered, fmt.Sprintf("the users' volumes (%s*: every user's notebooks and files) are not backed up: add to sources: volumes: {include: [\"%s*\", %q]}", UserVolumePrefix, UserVolumePrefix, cfg.Hub.DBVolume))
	} else {
		for _, u := range sampleUsers {
			if name := UserVolumePrefix + u; !matchAny(v.Include, name) || matchAny(v.Exclude, name) {
				cov.Uncovered = append(cov.Uncovered, fmt.Sprintf("the users' volumes (%s*) are not all backed up: sources.volumes leaves out %s: include \"%s*\" (and exclude no user)", UserVolumePrefix, name, UserVolumePrefix))
				break
			}
		}
	}

	// The stack folder: compose.yaml, the rendered configs, the secrets.
	folder := false
	for _, f := range cfg.Sources.Files {
		for _, p := range f.Paths {
			folder = folder || within(p, s.Dir)
		}
	}
	if !folder {
		cov.Uncovered = append(cov.Uncovered, fmt.Sprintf("the stack folder %s (compose.yaml, the rendered configs, the stack's secrets) is not backed up: add to sources: files: [{name: stack, paths: [%s]}]", s.Dir, s.Dir))
	}

	if cfg.Hub.TokenFile != "" {
		deployFile("hub.token_file", cfg.Hub.TokenFile, "writes no such file (the hub's token for fireops is "+filepath.Join(s.Dir, SecretsDir, "hub-fireops-token")+")")
	}

	// Alerts that reach no one are as good as none.
	if !HasReceiver(cfg) {
		cov.Uncovered = append(cov.Uncovered, NoReceiverWarning)
	}
	return cov, nil
}

// NoReceiverWarning is config check's warning for a stack whose alerts
// reach no one.
const NoReceiverWarning = "stack.alerts has no receiver: a failed backup or a full disk alerts no one (the alerts stay in Alertmanager's and Grafana's pages): " +
	"set stack.alerts.telegram (bot_token_file, chat_id), stack.alerts.email or stack.alerts.webhook_url " +
	"(the config `fireops init` writes has a commented alerts: example at the end of its stack: section; docs/deploy.md, Alerting), then run `fireops deploy`"

// hasStackSection reports whether the config file has a top-level stack:
// key.
func hasStackSection(file string) (bool, error) {
	if file == "" {
		return false, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return false, fmt.Errorf("coverage: read config: %w", err)
	}
	var top map[string]yaml.Node
	if err := yaml.Unmarshal(data, &top); err != nil {
		return false, fmt.Errorf("coverage: config %s: %w", file, err)
	}
	_, ok := top["stack"]
	return ok, nil
}

// matchAny reports whether name matches one of the volume globs, the way
// the volumes source matches them (path.Match against the whole name).
func matchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// within reports whether name is dir or inside it.
func within(dir, name string) bool {
	rel, err := filepath.Rel(dir, name)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// exists reports whether name exists (a broken symlink does not).
func exists(name string) bool {
	_, err := os.Stat(name)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}
