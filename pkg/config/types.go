package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole fireops configuration file (design.md §3). Field
// names follow the YAML keys; the keys are a contract for scripts and
// runbooks and are never renamed without a migration.
type Config struct {
	// Host names this machine in snapshot paths (<root>/<host>/...).
	Host string `yaml:"host" json:"host"`
	// Keys holds the encryption recipients and the key files.
	Keys Keys `yaml:"keys" json:"keys"`
	// Destinations are the rclone remotes every snapshot goes to.
	Destinations []Destination `yaml:"destinations" json:"destinations"`
	// ChunkSize is the size of one uploaded chunk of an object.
	ChunkSize ByteSize `yaml:"chunk_size" json:"chunk_size"`
	// StateDir holds the fingerprints of uploaded parts and lock files.
	StateDir string `yaml:"state_dir" json:"state_dir"`
	// Compression is the zstd level: fastest, default, better or best.
	Compression string `yaml:"compression" json:"compression"`
	// Sources lists what is backed up.
	Sources Sources `yaml:"sources" json:"sources"`
	// Retention is the default retention policy of every destination.
	Retention Retention `yaml:"retention" json:"retention"`
	// Schedule holds the cron specs of the jobs the daemon runs.
	Schedule Schedule `yaml:"schedule" json:"schedule"`
	// Metrics says where job results are published.
	Metrics Metrics `yaml:"metrics" json:"metrics"`
	// Hub says how to reach JupyterHub and its database.
	Hub Hub `yaml:"hub" json:"hub"`
	// GPU holds the thresholds of `fireops gpu check`.
	GPU GPU `yaml:"gpu" json:"gpu"`
	// Stack holds the settings of `fireops deploy`.
	Stack Stack `yaml:"stack" json:"stack"`

	// File is the absolute path the configuration was loaded from.
	File string `yaml:"-" json:"-"`
	// sections are the top-level keys the file names (Parse), for
	// `config check`'s sections in use (Report.YAML).
	sections map[string]bool
}

// Keys holds the public recipients and the paths of the key files.
type Keys struct {
	// Recipients are age X25519 recipients (age1...), inline.
	Recipients []string `yaml:"recipients" json:"recipients"`
	// RecipientsFile names a file with one age recipient a line.
	RecipientsFile string `yaml:"recipients_file" json:"recipients_file"`
	// IdentityFile is the private age identity; only restore and verify
	// full/restore-test need it.
	IdentityFile string `yaml:"identity_file" json:"identity_file"`
	// SigningKeyFile is the Ed25519 key that signs manifests.
	SigningKeyFile string `yaml:"signing_key_file" json:"signing_key_file"`
	// SigningPublicKey is a trusted public key (ed25519:...) manifests may
	// be signed with, for hosts that verify or restore without the signing
	// key. Kept for configs written before SigningPublicKeys; it is one
	// more trusted key.
	SigningPublicKey string `yaml:"signing_public_key" json:"signing_public_key"`
	// SigningPublicKeys are the trusted public keys (ed25519:...): a
	// manifest signed by any of them, or by signing_key_file, verifies.
	// After a signing key change the old key stays here until the
	// snapshots it signed are rotated away.
	SigningPublicKeys []string `yaml:"signing_public_keys" json:"signing_public_keys"`
}

// Destination is one rclone remote that receives every snapshot.
type Destination struct {
	// Name identifies the destination in output and in --dest.
	Name string `yaml:"name" json:"name"`
	// Remote is a local path, a remote from rclone.conf ("yandex:fireops")
	// or an inline connection string (":webdav,url=...:fireops").
	Remote string `yaml:"remote" json:"remote"`
	// RcloneConfig is the rclone.conf to read; empty means rclone's default.
	RcloneConfig string `yaml:"rclone_config" json:"rclone_config"`
	// Uploads is the number of chunks uploaded at once to this destination.
	Uploads int `yaml:"uploads" json:"uploads"`
	// Retention overrides the global retention policy for this destination.
	Retention *Retention `yaml:"retention,omitempty" json:"retention,omitempty"`
}

// Sources lists what a snapshot contains; every kind is optional.
type Sources struct {
	// Mongo dumps MongoDB databases.
	Mongo *MongoSource `yaml:"mongo" json:"mongo,omitempty"`
	// SQLite copies SQLite databases consistently.
	SQLite []SQLiteSource `yaml:"sqlite" json:"sqlite,omitempty"`
	// Volumes archives Docker volumes.
	Volumes *VolumeSource `yaml:"volumes" json:"volumes,omitempty"`
	// Files archives host folders.
	Files []FileSource `yaml:"files" json:"files,omitempty"`
}

// MongoSource says how to reach MongoDB and what to dump.
type MongoSource struct {
	// URIFile is a secret file holding the connection string.
	URIFile string `yaml:"uri_file" json:"uri_file"`
	// Databases to dump; empty means all but admin, local and config.
	Databases []string `yaml:"databases" json:"databases"`
}

// SQLiteSource is one SQLite database, by host path or inside a volume.
type SQLiteSource struct {
	// Name identifies the part (sqlite:<name>).
	Name string `yaml:"name" json:"name"`
	// Path is the database file on the host.
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// Volume is the Docker volume holding the database.
	Volume string `yaml:"volume,omitempty" json:"volume,omitempty"`
	// File is the database's path inside Volume.
	File string `yaml:"file,omitempty" json:"file,omitempty"`
}

// VolumeSource selects the Docker volumes to archive.
type VolumeSource struct {
	// Include lists glob patterns of volume names.
	Include []string `yaml:"include" json:"include"`
	// Exclude lists glob patterns removed from Include's matches.
	Exclude []string `yaml:"exclude" json:"exclude"`
	// PauseContainers pauses the containers using a volume while it is read.
	PauseContainers bool `yaml:"pause_containers" json:"pause_containers"`
	// Read chooses how volumes are read: auto, mountpoint or api.
	Read string `yaml:"read" json:"read"`
}

// FileSource is one named set of host paths.
type FileSource struct {
	// Name identifies the part (files:<name>).
	Name string `yaml:"name" json:"name"`
	// Paths are the files and folders to archive.
	Paths []string `yaml:"paths" json:"paths"`
	// Exclude lists glob patterns of names to leave out.
	Exclude []string `yaml:"exclude" json:"exclude"`
}

// Retention is a restic-style retention policy.
type Retention struct {
	KeepLast    int `yaml:"keep_last" json:"keep_last"`
	KeepHourly  int `yaml:"keep_hourly" json:"keep_hourly"`
	KeepDaily   int `yaml:"keep_daily" json:"keep_daily"`
	KeepWeekly  int `yaml:"keep_weekly" json:"keep_weekly"`
	KeepMonthly int `yaml:"keep_monthly" json:"keep_monthly"`
	KeepYearly  int `yaml:"keep_yearly" json:"keep_yearly"`
	// KeepWithin keeps every snapshot younger than this.
	KeepWithin Duration `yaml:"keep_within" json:"keep_within"`
	// IncompleteGrace is how old an incomplete snapshot or an unreferenced
	// object must be before rotate removes it.
	IncompleteGrace Duration `yaml:"incomplete_grace" json:"incomplete_grace"`
}

// Schedule holds the cron specs (5 fields, or @daily and the like) of the
// daemon's jobs; an empty spec disables the job.
type Schedule struct {
	Snapshot string `yaml:"snapshot" json:"snapshot"`
	Rotate   string `yaml:"rotate" json:"rotate"`
	Verify   string `yaml:"verify" json:"verify"`
	GPUCheck string `yaml:"gpu_check" json:"gpu_check"`
	// Jitter delays each scheduled run by a random time up to this, so
	// that hosts sharing a destination do not all start at once.
	Jitter Duration `yaml:"jitter" json:"jitter"`
	// VerifyLevel is the level of the scheduled verify: quick, hashes
	// (the default: every stored byte checked without a private key),
	// full or restore-test (the last two need keys.identity_file here).
	VerifyLevel string `yaml:"verify_level" json:"verify_level"`
}

// Metrics says where job results are published.
type Metrics struct {
	// TextfileDir is node-exporter's textfile collector folder; empty: off.
	TextfileDir string `yaml:"textfile_dir" json:"textfile_dir"`
	// Listen is the address of the daemon's /metrics; empty: off.
	Listen string `yaml:"listen" json:"listen"`
}

// Hub says how to reach JupyterHub's REST API and its database.
type Hub struct {
	APIURL    string `yaml:"api_url" json:"api_url"`
	TokenFile string `yaml:"token_file" json:"token_file"`
	DBVolume  string `yaml:"db_volume" json:"db_volume"`
	DBFile    string `yaml:"db_file" json:"db_file"`
	// DBPath is the hub database on the host, instead of DBVolume/DBFile.
	DBPath string `yaml:"db_path" json:"db_path"`
}

// GPU holds the thresholds of the GPU preflight.
type GPU struct {
	// ExpectCount is the number of GPUs the host must have; 0: any, at least one.
	ExpectCount int `yaml:"expect_count" json:"expect_count"`
	// MinDriver is the lowest acceptable driver version ("550.54"); empty: any.
	MinDriver string `yaml:"min_driver" json:"min_driver"`
	// MaxTemperatureC fails a GPU hotter than this.
	MaxTemperatureC int `yaml:"max_temperature_c" json:"max_temperature_c"`
	// RequireContainerRuntime fails the check when Docker has no nvidia runtime.
	RequireContainerRuntime bool `yaml:"require_container_runtime" json:"require_container_runtime"`
}

// Stack holds the settings of `fireops deploy`: what it renders into Dir
// and how the Compose stack runs (docs/deploy.md).
type Stack struct {
	// Dir is the folder the stack is rendered into.
	Dir string `yaml:"dir" json:"dir"`
	// Name is the Compose project name (the top-level name: of compose.yaml).
	Name string `yaml:"name" json:"name"`
	// GPUs gives user servers the host's GPUs and adds the GPU exporter,
	// GPU alerts and the GPU dashboard.
	GPUs bool `yaml:"gpus" json:"gpus"`
	// GPUExporter chooses the GPU exporter: dcgm or nvidia-smi.
	GPUExporter string `yaml:"gpu_exporter" json:"gpu_exporter"`
	// BindAddress is the host address the hub, Grafana and Prometheus ports
	// are published on; empty means the hub on every interface and Grafana
	// and Prometheus on 127.0.0.1 only (docs/deploy.md, "Exposure").
	// MongoDB is always published on 127.0.0.1 only.
	BindAddress string `yaml:"bind_address" json:"bind_address"`
	// TLS is the hub's certificate and key (pkg/config/tls.go).
	TLS StackTLS `yaml:"tls" json:"tls"`
	// Ports are the host ports the stack publishes.
	Ports StackPorts `yaml:"ports" json:"ports"`
	// Networks names the two Docker networks of design.md §1.
	Networks StackNetworks `yaml:"networks" json:"networks"`
	// HealthInterval is the interval of every container healthcheck.
	HealthInterval Duration `yaml:"health_interval" json:"health_interval"`
	// WaitTimeout bounds `docker compose up --wait`.
	WaitTimeout Duration `yaml:"wait_timeout" json:"wait_timeout"`
	// MinFreeDisk is the free space the preflight wants in Docker's data root.
	MinFreeDisk ByteSize `yaml:"min_free_disk" json:"min_free_disk"`
	// PrivilegedMonitoring runs cAdvisor privileged (with /dev/kmsg) and
	// mounts the host's / into node-exporter with rslave propagation; turn
	// it off where privileged containers are refused (rootless or nested
	// Docker), at the cost of some container metrics.
	PrivilegedMonitoring bool `yaml:"privileged_monitoring" json:"privileged_monitoring"`
	// Images are the pinned images of every service.
	Images StackImages `yaml:"images" json:"images"`
	// Hub configures JupyterHub and its image.
	Hub StackHub `yaml:"hub" json:"hub"`
	// Notebook configures the user servers' image.
	Notebook StackNotebook `yaml:"notebook" json:"notebook"`
	// Mongo configures the MongoDB service.
	Mongo StackMongo `yaml:"mongo" json:"mongo"`
	// Monitoring configures Prometheus, Loki and Grafana.
	Monitoring StackMonitoring `yaml:"monitoring" json:"monitoring"`
	// Alerts says where Alertmanager sends alerts and holds the thresholds.
	Alerts StackAlerts `yaml:"alerts" json:"alerts"`
	// Limits are the CPU and memory limits per service; an entry replaces
	// that service's default entry.
	Limits map[string]StackLimits `yaml:"limits" json:"limits"`
}

// StackPorts are the host ports the stack publishes; 0 publishes nothing.
type StackPorts struct {
	Hub        int `yaml:"hub" json:"hub"`
	Grafana    int `yaml:"grafana" json:"grafana"`
	Prometheus int `yaml:"prometheus" json:"prometheus"`
	// MongoDB is published on 127.0.0.1 only.
	MongoDB int `yaml:"mongodb" json:"mongodb"`
}

// StackNetworks are the Docker network names (used as they are, without
// the Compose project prefix, so that DockerSpawner can name them).
type StackNetworks struct {
	Jupyter    string `yaml:"jupyter" json:"jupyter"`
	Monitoring string `yaml:"monitoring" json:"monitoring"`
}

// StackImages are the images of the stack's services, pinned by tag. Hub
// and Notebook are the base images of the two images deploy builds.
type StackImages struct {
	Hub               string `yaml:"hub" json:"hub"`
	Notebook          string `yaml:"notebook" json:"notebook"`
	MongoDB           string `yaml:"mongodb" json:"mongodb"`
	MongoDBExporter   string `yaml:"mongodb_exporter" json:"mongodb_exporter"`
	Prometheus        string `yaml:"prometheus" json:"prometheus"`
	Alertmanager      string `yaml:"alertmanager" json:"alertmanager"`
	Grafana           string `yaml:"grafana" json:"grafana"`
	Loki              string `yaml:"loki" json:"loki"`
	Alloy             string `yaml:"alloy" json:"alloy"`
	NodeExporter      string `yaml:"node_exporter" json:"node_exporter"`
	CAdvisor          string `yaml:"cadvisor" json:"cadvisor"`
	DCGMExporter      string `yaml:"dcgm_exporter" json:"dcgm_exporter"`
	NvidiaSMIExporter string `yaml:"nvidia_smi_exporter" json:"nvidia_smi_exporter"`
}

// StackHub configures JupyterHub.
type StackHub struct {
	// Image is the name (without tag) of the hub image deploy builds.
	Image string `yaml:"image" json:"image"`
	// Packages are the pip requirements added to the hub image, pinned
	// with ==.
	Packages []string `yaml:"packages" json:"packages"`
	// AdminUsers are the hub's administrators.
	AdminUsers []string `yaml:"admin_users" json:"admin_users"`
	// OpenSignup lets new users in without an admin's approval.
	OpenSignup bool `yaml:"open_signup" json:"open_signup"`
	// IdleTimeout stops user servers idle for this long; 0 disables the
	// idle culler.
	IdleTimeout Duration `yaml:"idle_timeout" json:"idle_timeout"`
	// CPULimit is the CPUs of each user server; 0: no limit.
	CPULimit float64 `yaml:"cpu_limit" json:"cpu_limit"`
	// MemLimit is the memory of each user server; 0: no limit.
	MemLimit ByteSize `yaml:"mem_limit" json:"mem_limit"`
	// ShmSize is the size of /dev/shm in each user server (PyTorch's
	// DataLoader workers pass batches through it; Docker's default is 64
	// MB).
	ShmSize ByteSize `yaml:"shm_size" json:"shm_size"`
	// NotebookDir is where the user's volume is mounted in the server.
	NotebookDir string `yaml:"notebook_dir" json:"notebook_dir"`
	// GPUs says which GPUs each user server gets (pkg/config/gpu.go).
	GPUs StackHubGPUs `yaml:"gpus" json:"gpus"`
}

// StackNotebook configures the user servers' image.
type StackNotebook struct {
	// Image is the name (without tag) of the image deploy builds; the tag
	// is a hash of its Dockerfile.
	Image string `yaml:"image" json:"image"`
	// Packages are the pip requirements of the image, pinned with ==.
	Packages []string `yaml:"packages" json:"packages"`
}

// StackMongo configures the MongoDB service.
type StackMongo struct {
	// Volume is the Docker volume holding the data.
	Volume string `yaml:"volume" json:"volume"`
	// ReplicaSet is the name of the single-node replica set.
	ReplicaSet string `yaml:"replica_set" json:"replica_set"`
}

// StackMonitoring configures the monitoring services.
type StackMonitoring struct {
	// PrometheusRetention is how long Prometheus keeps samples.
	PrometheusRetention Duration `yaml:"prometheus_retention" json:"prometheus_retention"`
	// LokiRetention is how long Loki keeps logs.
	LokiRetention Duration `yaml:"loki_retention" json:"loki_retention"`
	// ScrapeInterval is Prometheus' scrape and rule evaluation interval.
	ScrapeInterval Duration `yaml:"scrape_interval" json:"scrape_interval"`
	// GrafanaRootURL is Grafana's public URL; empty: Grafana's default.
	GrafanaRootURL string `yaml:"grafana_root_url" json:"grafana_root_url"`
}

// StackAlerts says where alerts go and when they fire.
type StackAlerts struct {
	// Email sends alerts by e-mail when To is set.
	Email StackEmail `yaml:"email" json:"email"`
	// WebhookURL posts alerts to this URL when set.
	WebhookURL string `yaml:"webhook_url" json:"webhook_url"`
	// Telegram sends alerts to a Telegram chat through a bot when
	// BotTokenFile and ChatID are set.
	Telegram StackTelegram `yaml:"telegram" json:"telegram"`
	// DiskFreePercent fires DiskSpaceLow below this much free space.
	DiskFreePercent int `yaml:"disk_free_percent" json:"disk_free_percent"`
	// MemoryFreePercent fires MemoryLow below this much available memory.
	MemoryFreePercent int `yaml:"memory_free_percent" json:"memory_free_percent"`
}

// StackEmail is Alertmanager's e-mail receiver.
type StackEmail struct {
	To        []string `yaml:"to" json:"to"`
	From      string   `yaml:"from" json:"from"`
	Smarthost string   `yaml:"smarthost" json:"smarthost"`
	Username  string   `yaml:"username" json:"username"`
	// PasswordFile is a secret file with the SMTP password.
	PasswordFile string `yaml:"password_file" json:"password_file"`
	RequireTLS   bool   `yaml:"require_tls" json:"require_tls"`
}

// StackTelegram is Alertmanager's Telegram receiver (its own
// telegram_configs): the bot's token in a file, and the chat it posts to.
type StackTelegram struct {
	// BotTokenFile is a secret file with the bot's token (from @BotFather).
	BotTokenFile string `yaml:"bot_token_file" json:"bot_token_file"`
	// ChatID is the chat, group or channel the bot posts to (a group's
	// or channel's id is negative).
	ChatID int64 `yaml:"chat_id" json:"chat_id"`
}

// StackLimits are one service's resource limits; 0 means no limit.
type StackLimits struct {
	CPUs   float64  `yaml:"cpus" json:"cpus"`
	Memory ByteSize `yaml:"memory" json:"memory"`
}

// ByteSize is a size in bytes written as 32MiB, 1GiB, 512KiB or a plain number.
type ByteSize int64

// The binary size units.
const (
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
)

// ParseByteSize parses a size such as "32MiB", "1 GiB", "4096".
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	mult := ByteSize(1)
	for _, u := range []struct {
		suffix string
		mult   ByteSize
	}{{"KiB", KiB}, {"MiB", MiB}, {"GiB", GiB}, {"K", KiB}, {"M", MiB}, {"G", GiB}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q (use a whole number with KiB, MiB or GiB, e.g. 32MiB)", s)
	}
	return ByteSize(n) * mult, nil
}

// String formats the size with the largest exact binary unit.
func (b ByteSize) String() string {
	switch {
	case b != 0 && b%GiB == 0:
		return fmt.Sprintf("%dGiB", b/GiB)
	case b != 0 && b%MiB == 0:
		return fmt.Sprintf("%dMiB", b/MiB)
	case b != 0 && b%KiB == 0:
		return fmt.Sprintf("%dKiB", b/KiB)
	}
	return strconv.FormatInt(int64(b), 10)
}

// UnmarshalYAML reads a size from a string or an integer.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// MarshalYAML writes the size in its String form.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// MarshalText writes the size in its String form (used by JSON).
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// Duration is a time.Duration that also accepts days and weeks ("7d", "2w").
type Duration time.Duration

// ParseDuration parses Go durations ("24h", "90m") and whole days or weeks
// ("7d", "2w").
func ParseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" || t == "0" {
		return 0, nil
	}
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour}} {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			v, err := strconv.Atoi(n)
			if err != nil || v < 0 {
				return 0, fmt.Errorf("invalid duration %q (use e.g. 24h, 7d or 2w)", s)
			}
			return Duration(time.Duration(v) * u.unit), nil
		}
	}
	d, err := time.ParseDuration(t)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid duration %q (use e.g. 24h, 7d or 2w)", s)
	}
	return Duration(d), nil
}

// String formats the duration, in days when it is a whole number of days.
func (d Duration) String() string {
	td := time.Duration(d)
	if td != 0 && td%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", td/(24*time.Hour))
	}
	return td.String()
}

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = v
	return nil
}

// MarshalYAML writes the duration in its String form.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalText writes the duration in its String form (used by JSON).
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
