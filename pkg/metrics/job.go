package metrics

// Textfile is one metrics textfile: its name and its families.
type Textfile struct {
	Name     string
	Families []Family
}

// JobMetrics is what one job run publishes: the families of its run file,
// and those of its success file when the run succeeded. The textfiles and
// the daemon's /metrics get exactly these.
type JobMetrics struct {
	// Job is snapshot, verify, rotate, restore or gpu_check.
	Job string
	// RunFile and SuccessFile are the textfile names.
	RunFile, SuccessFile string
	// Run is written on every run; Success only when it is not nil.
	Run, Success []Family
	// Extra are further files this run replaces (rotate's sweep file of
	// each destination it swept); other files of the same kind stay.
	Extra []Textfile
}

// Textfiles are the files this run replaces: the run file, the success
// file when the run succeeded, and the extra ones.
func (m JobMetrics) Textfiles() []Textfile {
	out := []Textfile{{Name: m.RunFile, Families: m.Run}}
	if m.Success != nil {
		out = append(out, Textfile{Name: m.SuccessFile, Families: m.Success})
	}
	return append(out, m.Extra...)
}

// Write replaces the textfiles in dir (nothing when dir is empty), each
// atomically.
func (m JobMetrics) Write(dir string) error {
	if dir == "" {
		return nil
	}
	for _, f := range m.Textfiles() {
		if err := WriteTextfile(dir, f.Name, f.Families); err != nil {
			return err
		}
	}
	return nil
}
