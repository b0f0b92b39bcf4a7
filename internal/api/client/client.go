// Package client is the typed client of inspectd's control API (package
// internal/api), used by the CLI and by tests. Errors say what an
// operator needs to know: that the daemon is not running, or that the
// socket is root-only.
package client

import (
	"bufio"
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
	"sync"
	"syscall"
	"time"

	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/api"
)

// EnvSocket names the environment variable that overrides the default
// socket path.
const EnvSocket = "INSPECTD_SOCKET"

// SocketPath returns the socket to use: flag when set, else $INSPECTD_SOCKET
// when set, else api.DefaultSocket.
func SocketPath(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv(EnvSocket); env != "" {
		return env
	}
	return api.DefaultSocket
}

// Sentinel errors, wrapped with the socket's path and advice.
var (
	// ErrNotRunning: no socket, or nobody listening on it.
	ErrNotRunning = errors.New("inspectd is not running")
	// ErrPermission: the socket exists but this user may not use it.
	ErrPermission = errors.New("permission denied")
	// ErrNotSocket: the path is a directory, a regular file or the like.
	ErrNotSocket = errors.New("not a socket")
)

// Error is an error answer of the API.
type Error struct {
	Status  int    // HTTP status
	Message string // the server's message
}

func (e *Error) Error() string { return e.Message }

// Client talks to one daemon's control socket.
type Client struct {
	path    string
	version string
	hc      *http.Client

	mu     sync.Mutex
	server string // last version header seen
}

// New returns a client for the socket at path that announces itself as
// version.
func New(path, version string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
	}
	return &Client{path: path, version: version, hc: &http.Client{Transport: tr}}
}

// Path returns the socket's path.
func (c *Client) Path() string { return c.path }

// ServerVersion returns the daemon's version as its last answer gave it,
// "" before the first answer.
func (c *Client) ServerVersion() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.server
}

// explain turns a dial error into one an operator can act on.
func (c *Client) explain(err error) error {
	// Connecting to a directory or a regular file fails with ECONNREFUSED
	// as a dead daemon's socket does; only the path's type tells them apart.
	if fi, serr := os.Stat(c.path); serr == nil && fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s is %w (it is a %s); point --socket or %s at inspectd's control socket",
			c.path, ErrNotSocket, fileKind(fi.Mode()), EnvSocket)
	}
	switch {
	case errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("%w (no socket at %s; start it with 'inspectd run' or 'systemctl start inspectd', or point --socket or %s elsewhere)",
			ErrNotRunning, c.path, EnvSocket)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w (nothing listens on %s: a stale socket left by a daemon that died?)", ErrNotRunning, c.path)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("%w on %s: the control socket is for root (run with sudo), or for the group set with 'inspectd run --socket-group'", ErrPermission, c.path)
	case errors.Is(err, syscall.ENOTSOCK):
		return fmt.Errorf("%s is %w; point --socket or %s at inspectd's control socket", c.path, ErrNotSocket, EnvSocket)
	}
	return fmt.Errorf("control socket %s: %w", c.path, err)
}

// fileKind names the type of a file that is not a socket.
func fileKind(m os.FileMode) string {
	switch m.Type() {
	case 0:
		return "regular file"
	case os.ModeDir:
		return "directory"
	case os.ModeNamedPipe:
		return "named pipe"
	case os.ModeDevice, os.ModeDevice | os.ModeCharDevice:
		return "device"
	}
	return "file of another kind"
}

// do sends a request and returns the response when its status is 2xx.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body any) (*http.Response, error) {
	u := "http://inspectd" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set(api.VersionHeader, c.version)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, c.explain(err)
	}
	c.mu.Lock()
	c.server = resp.Header.Get(api.VersionHeader)
	c.mu.Unlock()
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e api.Error
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
		}
		return nil, &Error{Status: resp.StatusCode, Message: e.Error}
	}
	return resp, nil
}

func (c *Client) call(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := c.do(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return fmt.Errorf("bad answer to %s: %w", path, err)
	}
	return nil
}

// Version returns the daemon's version information.
func (c *Client) Version(ctx context.Context) (api.VersionInfo, error) {
	var v api.VersionInfo
	return v, c.call(ctx, http.MethodGet, "/v1/version", nil, nil, &v)
}

// Sessions returns the sessions that pass f, by ID.
func (c *Client) Sessions(ctx context.Context, f api.SessionFilter) ([]inspect.SessionInfo, error) {
	var out []inspect.SessionInfo
	return out, c.call(ctx, http.MethodGet, "/v1/sessions", f.Query(), nil, &out)
}

// Expectations returns the pending expectations, by ID.
func (c *Client) Expectations(ctx context.Context) ([]inspect.ExpectInfo, error) {
	var out []inspect.ExpectInfo
	return out, c.call(ctx, http.MethodGet, "/v1/expectations", nil, nil, &out)
}

// Stats returns the daemon's counters.
func (c *Client) Stats(ctx context.Context) (api.Stats, error) {
	var out api.Stats
	return out, c.call(ctx, http.MethodGet, "/v1/stats", nil, nil, &out)
}

// Rules returns the rules in force with their hit counters.
func (c *Client) Rules(ctx context.Context) (api.Rules, error) {
	var out api.Rules
	return out, c.call(ctx, http.MethodGet, "/v1/rules", nil, nil, &out)
}

// Clear removes session id from inspectd and from the kernel.
func (c *Client) Clear(ctx context.Context, id uint64) (api.ClearResult, error) {
	var out api.ClearResult
	return out, c.call(ctx, http.MethodPost, "/v1/clear", nil, api.ClearRequest{ID: id}, &out)
}

// ClearAll removes every session from inspectd and from the kernel.
func (c *Client) ClearAll(ctx context.Context) (api.ClearResult, error) {
	var out api.ClearResult
	return out, c.call(ctx, http.MethodPost, "/v1/clear", nil, api.ClearRequest{All: true}, &out)
}

// Reload makes the daemon re-read its rule file.
func (c *Client) Reload(ctx context.Context) (api.ReloadResult, error) {
	var out api.ReloadResult
	return out, c.call(ctx, http.MethodPost, "/v1/reload", nil, struct{}{}, &out)
}

// Stream is a live stream of events from Watch.
type Stream struct {
	body   io.ReadCloser
	sc     *bufio.Scanner
	cancel context.CancelFunc
}

// Watch opens a stream of events, of the given kinds (all when none);
// cancel ctx or Close the stream to end it.
func (c *Client) Watch(ctx context.Context, kinds ...string) (*Stream, error) {
	return c.WatchWithin(ctx, 0, kinds...)
}

// WatchWithin is Watch giving up when connecting and the daemon's answer
// take longer than wait (no limit when 0); the error then wraps
// context.DeadlineExceeded. Once open, the stream is not limited by wait.
func (c *Client) WatchWithin(ctx context.Context, wait time.Duration, kinds ...string) (*Stream, error) {
	var q url.Values
	if len(kinds) > 0 {
		q = url.Values{"kind": {strings.Join(kinds, ",")}}
	}
	// A deadline on ctx would end the stream too, so a timer cancels the
	// request instead and is stopped once the answer is in.
	ctx, cancel := context.WithCancelCause(ctx)
	var timer *time.Timer
	if wait > 0 {
		timer = time.AfterFunc(wait, func() { cancel(context.DeadlineExceeded) })
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/watch", q, nil)
	if timer != nil && !timer.Stop() && err == nil {
		resp.Body.Close()
		err = context.DeadlineExceeded // the answer came as time ran out
	}
	if err != nil {
		cancel(err)
		return nil, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return &Stream{body: resp.Body, sc: sc, cancel: func() { cancel(nil) }}, nil
}

// Next returns the next event; io.EOF when the daemon ended the stream.
func (s *Stream) Next() (api.Event, error) {
	var ev api.Event
	if !s.sc.Scan() {
		if err := s.sc.Err(); err != nil {
			return ev, err
		}
		return ev, io.EOF
	}
	if err := json.Unmarshal(s.sc.Bytes(), &ev); err != nil {
		return ev, fmt.Errorf("bad event from the daemon: %w", err)
	}
	return ev, nil
}

// Close ends the stream.
func (s *Stream) Close() error {
	defer s.cancel()
	return s.body.Close()
}
