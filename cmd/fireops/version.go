package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/firetech/fireops/pkg/buildinfo"
)

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build date and Go version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			info := buildinfo.Get()
			if a.jsonOut {
				return a.printJSON(info)
			}
			_, err := fmt.Fprint(a.stdout, versionText(info))
			return err
		},
	}
}

// versionText is what `fireops version` and `fireops --version` print.
func versionText(info buildinfo.Info) string {
	return fmt.Sprintf("fireops %s\ncommit:   %s\nbuilt:    %s\ngo:       %s %s\n",
		info.Version, info.Commit, info.Date, info.GoVersion, info.Platform)
}

// setVersionFlag gives fireops a --version flag that prints the same text
// as `fireops version` (cobra prints its version template).
func setVersionFlag(root *cobra.Command) {
	info := buildinfo.Get()
	root.Version = info.Version
	// A quoted Go string is a template constant: the text is printed as
	// is; with --json, the JSON `fireops version --json` prints.
	js, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		js = []byte("{}") // a struct of strings always marshals
	}
	root.SetVersionTemplate(fmt.Sprintf(`{{if eq ((.Flags.Lookup "json").Value.String) "true"}}{{%q}}{{else}}{{%q}}{{end}}`,
		string(js)+"\n", versionText(info)))
	root.InitDefaultVersionFlag() // now, so that man pages and completion have it
	root.Flags().Lookup("version").Usage = "print the version, commit, build date and Go version (as fireops version)"
}
