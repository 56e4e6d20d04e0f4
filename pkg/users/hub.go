package users

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/firetech/fireops/pkg/exitcode"
)

// ErrNoHubUser is returned by Hub.User when the hub has no such user.
var ErrNoHubUser = errors.New("no such hub user")

// HubUser is the part of JupyterHub's user model (GET /users/{name}) that
// fireops uses.
type HubUser struct {
	// Name is the username.
	Name string `json:"name"`
	// Admin is the hub's admin flag.
	Admin bool `json:"admin"`
	// Server is the URL of the default server when it runs, or "".
	Server string `json:"server"`
	// Servers holds the active servers by name ("" is the default one).
	Servers map[string]json.RawMessage `json:"servers"`
	// LastActivity is the last time the hub saw the user, if ever.
	LastActivity *time.Time `json:"last_activity"`
}

// Running says whether any of the user's servers is active.
func (u *HubUser) Running() bool { return u.Server != "" || len(u.Servers) > 0 }

// Hub is a client of JupyterHub's REST API, authenticated with an API token
// that has the admin:users scope (an admin service's token).
type Hub struct {
	base   *url.URL
	token  string
	client *http.Client
}

// Request timeouts: DELETE waits while the hub stops the user's server.
const (
	requestTimeout = 30 * time.Second
	deleteTimeout  = 3 * time.Minute
)

// NewHub returns a client for the REST API at apiURL (for example
// http://127.0.0.1:8000/hub/api) using token. A nil client means
// http.DefaultClient; every request has its own timeout (30 s, 3 min for
// DELETE).
func NewHub(apiURL, token string, client *http.Client) (*Hub, error) {
	u, err := url.Parse(strings.TrimRight(apiURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, exitcode.Usagef("set hub.api_url to a URL like http://127.0.0.1:8000/hub/api", "invalid hub API URL %q", apiURL)
	}
	if token == "" {
		return nil, exitcode.Usagef("put an admin API token of the hub into the file named by hub.token_file", "empty hub API token")
	}
	if client == nil {
		client = http.DefaultClient
	}
	return &Hub{base: u, token: token, client: client}, nil
}

// ReadToken reads an API token from a file (hub.token_file): the first
// line, trimmed.
func ReadToken(path string) (string, error) {
	if path == "" {
		return "", exitcode.Usagef("set hub.token_file to a file (mode 0600) holding an admin API token of the hub",
			"hub.token_file is not set")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", exitcode.New(exitcode.Usage, fmt.Errorf("read hub token: %w", err), "check hub.token_file in the config")
	}
	tok, _, _ := strings.Cut(string(data), "\n")
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", exitcode.Usagef("put an admin API token of the hub into "+path, "hub token file %s is empty", path)
	}
	return tok, nil
}

// URL returns the API base URL, a password in it redacted.
func (h *Hub) URL() string { return h.base.Redacted() }

// apiError is the JSON body of a JupyterHub API error.
type apiError struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
}

// do sends one request and decodes a JSON answer into out (when not nil).
// It returns ErrNoHubUser for 404 and a one-line error with a hint for
// everything else that is not 2xx.
func (h *Hub) do(ctx context.Context, method, path string, query url.Values, body, out any, header http.Header) error {
	target := strings.TrimRight(h.base.String(), "/") + path
	if query != nil {
		target += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	timeout := requestTimeout
	if method == http.MethodDelete {
		timeout = deleteTimeout
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "token "+h.token)
	req.Header.Set("Accept", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	what := method + " " + h.base.Path + path
	resp, err := h.client.Do(req)
	if err != nil {
		if parent.Err() != nil {
			return fmt.Errorf("hub API %s: %w", what, parent.Err())
		}
		hint := "is the hub running? check hub.api_url (" + h.URL() + ")"
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			hint = "the hub did not answer in time; check that it is healthy (docker compose ps) and hub.api_url"
		}
		return exitcode.New(exitcode.Failure, fmt.Errorf("hub API unreachable: %s: %w", what, unwrapURLError(err)), hint)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return exitcode.New(exitcode.Failure, fmt.Errorf("hub API %s: read answer: %w", what, err), "")
	}
	if resp.StatusCode/100 == 2 {
		if out == nil || resp.StatusCode == http.StatusNoContent {
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return exitcode.New(exitcode.Failure, fmt.Errorf("hub API %s: unexpected answer: %w", what, err),
				"check that hub.api_url points at the hub's API (it ends in /hub/api)")
		}
		return nil
	}
	var ae apiError
	fromAPI := json.Unmarshal(data, &ae) == nil && ae.Status != 0
	msg := strings.TrimSpace(string(data))
	if fromAPI && ae.Message != "" {
		msg = ae.Message
	}
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		// The hub's API answers JSON; a 404 from anything else (a wrong
		// api_url) must not read as "no such user".
		if fromAPI && strings.HasPrefix(path, "/users/") {
			return ErrNoHubUser
		}
		return exitcode.New(exitcode.Usage, fmt.Errorf("hub API %s: HTTP 404: %s", what, msg),
			"check hub.api_url: it must be the API base, like http://127.0.0.1:8000/hub/api")
	case http.StatusUnauthorized, http.StatusForbidden:
		return exitcode.New(exitcode.Usage, fmt.Errorf("hub API refused the token: %s: HTTP %d: %s", what, resp.StatusCode, msg),
			"check hub.token_file: it must hold a valid API token of a service in the hub's admin role (scopes list:users, admin:users)")
	}
	return exitcode.New(exitcode.Failure, fmt.Errorf("hub API %s: HTTP %d: %s", what, resp.StatusCode, msg), "see the hub's log (docker compose logs jupyterhub)")
}

// unwrapURLError drops the *url.Error wrapper, whose message repeats the
// method and the URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func userPath(name string) string { return "/users/" + url.PathEscape(name) }

// User returns the hub user name, or ErrNoHubUser.
func (h *Hub) User(ctx context.Context, name string) (*HubUser, error) {
	var u HubUser
	if err := h.do(ctx, http.MethodGet, userPath(name), nil, nil, &u, nil); err != nil {
		return nil, err
	}
	return &u, nil
}

// Users returns every hub user, following the API's pagination.
func (h *Hub) Users(ctx context.Context) ([]HubUser, error) {
	var all []HubUser
	hdr := http.Header{"Accept": {"application/jupyterhub-pagination+json"}}
	offset := 0
	for {
		var page struct {
			Items      []HubUser `json:"items"`
			Pagination *struct {
				Total int `json:"total"`
				Next  *struct {
					Offset int `json:"offset"`
				} `json:"next"`
			} `json:"_pagination"`
		}
		q := url.Values{"offset": {fmt.Sprint(offset)}, "limit": {"200"}}
		var raw json.RawMessage
		if err := h.do(ctx, http.MethodGet, "/users", q, nil, &raw, hdr); err != nil {
			return nil, err
		}
		// Hubs before 2.0 ignore the pagination media type and answer a list.
		if len(raw) > 0 && raw[0] == '[' {
			if err := json.Unmarshal(raw, &all); err != nil {
				return nil, fmt.Errorf("hub API GET /users: %w", err)
			}
			return all, nil
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			return nil, fmt.Errorf("hub API GET /users: %w", err)
		}
		all = append(all, page.Items...)
		if page.Pagination == nil || page.Pagination.Next == nil || page.Pagination.Next.Offset <= offset || len(page.Items) == 0 {
			return all, nil
		}
		offset = page.Pagination.Next.Offset
	}
}

// SetAdmin sets the admin flag of an existing hub user.
func (h *Hub) SetAdmin(ctx context.Context, name string, admin bool) (*HubUser, error) {
	var u HubUser
	if err := h.do(ctx, http.MethodPatch, userPath(name), nil, map[string]any{"admin": admin}, &u, nil); err != nil {
		return nil, err
	}
	return &u, nil
}

// CreateUser creates the hub user name (POST /users/{name}) with the given
// admin flag.
func (h *Hub) CreateUser(ctx context.Context, name string, admin bool) (*HubUser, error) {
	var u HubUser
	if err := h.do(ctx, http.MethodPost, userPath(name), nil, map[string]any{"admin": admin}, &u, nil); err != nil {
		return nil, err
	}
	return &u, nil
}

// DeleteUser deletes the hub user name (its server is stopped first by the
// hub). It returns ErrNoHubUser when there is none.
func (h *Hub) DeleteUser(ctx context.Context, name string) error {
	return h.do(ctx, http.MethodDelete, userPath(name), nil, nil, nil, nil)
}
