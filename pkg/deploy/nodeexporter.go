package deploy

// node-exporter runs in the host's network namespace (network_mode: host,
// docs/deploy.md "node-exporter on the host network"), so it listens on
// every address of the host, the Docker bridges' gateways included: a user
// server reaches it through its own network's gateway. It therefore
// requires basic auth (--web.config.file with a bcrypt hash of the
// generated node-exporter-password, as Prometheus' own web config), and
// Prometheus' node job scrapes with that password. Binding it to chosen
// addresses would not keep users out: the host answers on each of its
// addresses from every bridge, and Prometheus reaches it through
// host.docker.internal, the monitoring network's gateway.

// NodeExporterUser is the basic-auth user Prometheus scrapes node-exporter
// as; its password is the generated secret node-exporter-password.
const NodeExporterUser = "prometheus"

// Secret files of node-exporter's basic auth, and where the containers
// read them (Compose secrets).
const (
	nodeExporterPasswordFile = "node-exporter-password"
	nodeExporterWebFile      = "node-exporter-web.yml"
	// NodeExporterWebConfig is node-exporter's --web.config.file.
	NodeExporterWebConfig = "/run/secrets/node_exporter_web_config"
	// NodeExporterPasswordPath is the password file of Prometheus' node job.
	NodeExporterPasswordPath = "/run/secrets/node_exporter_password"
)

// nodeExporterSecretSpecs are the password (read by Prometheus) and
// node-exporter's web config derived from it. Both images run as nobody.
func nodeExporterSecretSpecs() []SecretSpec {
	return []SecretSpec{
		{Name: nodeExporterPasswordFile, UID: uidPrometheus, make: randomHex(16)},
		{Name: nodeExporterWebFile, UID: uidPrometheus, Derived: true, make: func(read func(string) ([]byte, error)) ([]byte, error) {
			return basicAuthWebConfig(read, "node-exporter's", NodeExporterUser, nodeExporterPasswordFile, nodeExporterWebFile)
		}},
	}
}

// NodeExporterUser tells the templates node-exporter's basic-auth user.
func (d *renderData) NodeExporterUser() string { return NodeExporterUser }

// NodeExporterPasswordPath tells the templates where Prometheus reads
// node-exporter's password.
func (d *renderData) NodeExporterPasswordPath() string { return NodeExporterPasswordPath }

// nodeExporterHealth is node-exporter's healthcheck: with basic auth on,
// an answer "401 Unauthorized" to a request without credentials says that
// it serves, with its web config loaded, and keeps the password off every
// command line (the container shares the host's PID namespace). Whether
// Prometheus' scrape authenticates is its up metric (HostDown).
var nodeExporterHealth = []string{"CMD", "sh", "-c", "wget -q -O /dev/null http://127.0.0.1:9100/ 2>&1 | grep -q '401 Unauthorized'"}
