package main

import (
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
			_, err := fmt.Fprintf(a.stdout, "fireops %s\ncommit:   %s\nbuilt:    %s\ngo:       %s %s\n",
				info.Version, info.Commit, info.Date, info.GoVersion, info.Platform)
			return err
		},
	}
}
