package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/firetech/fireops/pkg/bootstrap"
)

func (a *app) initCommand() *cobra.Command {
	var dir, host string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a commented config, a new age identity and a signing key",
		Long: `init writes three new files into DIR (default: the folder of --config):

  fireops.yaml   a commented config that backs up the whole stack
                 fireops deploy renders from it: the hub database,
                 MongoDB (through the URI deploy writes), every user's
                 volume and the stack folder, to /var/backups/fireops (and,
                 commented out, Yandex Disk with its rclone steps), with job
                 metrics for node-exporter's textfile collector
  identity.txt   a new age X25519 identity (0600), in age's own format
  signing.key    a new Ed25519 key that signs manifests (0600, PKCS#8 PEM)

It refuses to overwrite any existing file. Next steps: docs/quickstart.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				dir = filepath.Dir(a.configPath)
			}
			res, err := bootstrap.Init(bootstrap.Options{Dir: dir, Host: host})
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(res)
			}
			w := a.stdout
			fmt.Fprintf(w, "wrote %s\nwrote %s (0600)\nwrote %s (0600)\n\n", res.Config, res.Identity, res.SigningKey)
			fmt.Fprintf(w, "Store OFFLINE now (password manager, a USB key in a safe):\n  %s\n", res.Identity)
			fmt.Fprintf(w, "  without it no snapshot can ever be restored. It need not stay on this host.\n\n")
			fmt.Fprintf(w, "Stays on this host:\n  recipient (public, in the config): %s\n  signing key: %s\n", res.Recipient, res.SigningKey)
			fmt.Fprintf(w, "  signing public key (in the config): %s\n\n", res.SigningPublicKey)
			fmt.Fprintf(w, "Next (docs/quickstart.md): check the stack: section of %s, then run\n", res.Config)
			fmt.Fprintf(w, "  fireops --config %s config check\n  fireops --config %s deploy\n", res.Config, res.Config)
			fmt.Fprintf(w, "and enable the timers (fireops-snapshot.timer and the others).\n")
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "folder to write into (default: the folder of --config)")
	cmd.Flags().StringVar(&host, "host", "", "host name to write into the config (default: this machine's)")
	return cmd
}
