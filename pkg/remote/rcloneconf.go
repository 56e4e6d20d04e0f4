package remote

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/rclone/rclone/fs"
	rconfig "github.com/rclone/rclone/fs/config"
	"github.com/rclone/rclone/fs/config/configfile"

	"github.com/firetech/fireops/pkg/exitcode"
	"github.com/firetech/fireops/pkg/keys"
)

// rclone's process-wide state: its config file (one per process) and the
// global options that matter when rclone runs unattended inside fireops.
var (
	setupOnce sync.Once

	// defaultConfigPath is rclone's own choice, taken before anything
	// here changes it.
	defaultConfigPath = rconfig.GetConfigPath()

	confMu   sync.Mutex
	confPath string // the config file installed; "" while none is
)

// setupRclone sets the global options that rclone reads without a context:
// the encrypted-config password prompt (never: fireops runs from cron).
func setupRclone() {
	setupOnce.Do(func() {
		ci := fs.GetConfig(context.Background())
		ci.AskPassword = false
		ci.Progress = false
	})
}

// checkConfigFile says clearly when an rclone_config set in the config is
// not there, rather than letting rclone carry on with an empty config.
func checkConfigFile(p string) error {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("rclone config %s does not exist (create it with rclone config, or fix rclone_config)", p)
	case err != nil:
		return fmt.Errorf("rclone config: %w", err)
	case fi.IsDir():
		return fmt.Errorf("rclone config %s is a directory", p)
	}
	return nil
}

// checkSecret checks the rclone config p like every file holding
// secrets (keys.CheckSecretFile: not readable by group or others, owned by
// root or the running user): it holds the remotes' passwords and tokens.
// A refusal is a usage error (exit 2) with the fix as its hint; a missing
// file is left to rclone (no remotes) or to checkConfigFile.
func checkSecret(p string) error {
	err := keys.CheckSecretFile(p)
	var se *keys.SecretFileError
	switch {
	case err == nil, errors.Is(err, os.ErrNotExist):
		return nil
	case errors.As(err, &se):
		return exitcode.Usagef(se.Hint, "rclone config: %w", err)
	}
	return fmt.Errorf("rclone config: %w", err)
}

// useConfigFile installs p (or the default rclone.conf when p is empty) as
// rclone's config file, the one named remotes are read from and refreshed
// OAuth tokens are written to. rclone has one per process: a second,
// different file is refused.
func useConfigFile(p string) error {
	if p == "" {
		p = os.Getenv("RCLONE_CONFIG")
	}
	if p == "" {
		p = defaultConfigPath
	}
	if p == "" {
		return errors.New("no rclone config file: set rclone_config")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return fmt.Errorf("rclone config %s: %w", p, err)
	}
	if err := checkSecret(p); err != nil {
		return err
	}
	confMu.Lock()
	defer confMu.Unlock()
	if confPath != "" {
		if confPath == abs {
			return nil
		}
		return fmt.Errorf("rclone config %s: this run already uses %s; destinations that name rclone remotes must share one rclone_config", abs, confPath)
	}
	if err := rconfig.SetConfigPath(abs); err != nil {
		return fmt.Errorf("rclone config %s: %w", abs, err)
	}
	configfile.Install()
	// Load it now: rclone's lazy loader exits the process on a bad file.
	if err := rconfig.Data().Load(); err != nil && !errors.Is(err, rconfig.ErrorConfigFileNotFound) {
		rconfig.SetData(emptyStorage{})
		_ = rconfig.SetConfigPath("")
		return fmt.Errorf("rclone config %s: %w", abs, err)
	}
	_ = rconfig.LoadedData()
	confPath = abs
	return nil
}

// emptyStorage stands in for a config file that failed to load, so that
// rclone finds no remotes instead of exiting.
type emptyStorage struct{}

func (emptyStorage) GetSectionList() []string               { return nil }
func (emptyStorage) HasSection(string) bool                 { return false }
func (emptyStorage) DeleteSection(string)                   {}
func (emptyStorage) GetKeyList(string) []string             { return nil }
func (emptyStorage) GetValue(string, string) (string, bool) { return "", false }
func (emptyStorage) SetValue(string, string, string)        {}
func (emptyStorage) DeleteKey(string, string) bool          { return false }
func (emptyStorage) Load() error                            { return nil }
func (emptyStorage) Save() error                            { return errors.New("no rclone config file") }
func (emptyStorage) Serialize() (string, error)             { return "", nil }
