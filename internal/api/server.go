package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inspectd/inspectd/inspect"
)

// Options configure a Server.
type Options struct {
	// Path is the socket's path; "" means DefaultSocket.
	Path string
	// Group, when set (a group name or numeric id), makes the socket
	// mode 0660 and owned by that group; else it is 0600, for its owner
	// (root) only.
	Group string
	// Version is the daemon's version, sent in VersionHeader.
	Version string
	// ErrorLog receives net/http's own errors (failed accepts, such as
	// "too many open files", and the like); nil means the log package's
	// standard logger.
	ErrorLog *log.Logger

	limits limits // the zero value means defaultLimits
}

// limits are a server's timeouts and its cap on open connections.
type limits struct {
	ReadHeader time.Duration // to read a request's header
	Read       time.Duration // to read a whole request, body included
	Write      time.Duration // to answer, from the end of the header; not for watch streams
	Idle       time.Duration // between requests on a kept-alive connection
	Conns      int           // connections open at once (see LimitListener)
}

// MaxConns bounds the connections open at once on the control socket;
// those beyond it wait in the socket's backlog until one closes.
const MaxConns = 128

// defaultLimits are the limits of the control socket. Watch streams
// outlive them all: the idle and header timeouts apply between requests
// and the read timeout only until the request is read, and watch lifts
// the write timeout.
var defaultLimits = limits{
	ReadHeader: 5 * time.Second,
	Read:       30 * time.Second,
	Write:      time.Minute,
	Idle:       time.Minute,
	Conns:      MaxConns,
}

// ErrRunning is returned by NewServer when something already answers on
// the socket.
var ErrRunning = errors.New("another process answers on the control socket (is inspectd already running?)")

// maxBody bounds request bodies.
const maxBody = 64 << 10

// Server serves a Backend on a unix socket.
type Server struct {
	b       Backend
	opt     Options
	ln      net.Listener // the socket, at most limits.Conns connections at once
	hs      *http.Server
	started time.Time

	ctx    context.Context // ends watch streams on Close
	cancel context.CancelFunc
	once   sync.Once
	err    error

	watchers atomic.Int32 // watch streams open now
}

// MaxWatchers bounds the watch streams open at once: each costs a buffer
// and a channel send per event on the packet path.
const MaxWatchers = 32

// NewServer listens on the socket (see Options) and returns a server for
// b; call Serve to serve and Close to stop. A stale socket file left by a
// dead daemon is replaced; a live one is ErrRunning. The server keeps at
// most MaxConns connections open and drops clients that are slow to send
// a request, or idle for a minute between requests.
func NewServer(b Backend, opt Options) (*Server, error) {
	if opt.Path == "" {
		opt.Path = DefaultSocket
	}
	ln, err := listen(opt.Path, opt.Group)
	if err != nil {
		return nil, err
	}
	lim := opt.limits
	if lim == (limits{}) {
		lim = defaultLimits
	}
	s := &Server{b: b, opt: opt, ln: LimitListener(ln, lim.Conns), started: time.Now()}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.hs = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: lim.ReadHeader,
		ReadTimeout:       lim.Read,
		WriteTimeout:      lim.Write,
		IdleTimeout:       lim.Idle,
		ErrorLog:          opt.ErrorLog,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
	}
	return s, nil
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.opt.Path }

// Serve serves requests until Close; it then returns nil.
func (s *Server) Serve() error {
	err := s.hs.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("api: %w", err)
}

// Close stops the server, ends the watch streams, waits up to two seconds
// for requests in progress and removes the socket.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.hs.Shutdown(ctx); err != nil {
			s.hs.Close()
		}
		s.ln.Close()
		if err := os.Remove(s.opt.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.err = fmt.Errorf("api: %w", err)
		}
	})
	return s.err
}

// listen makes the socket at path with its final mode and owner before it
// appears there: it is bound in a private directory beside path, then
// renamed into place, so nobody can connect while it is still open to all.
func listen(path, group string) (*net.UnixListener, error) {
	gid := -1
	if group != "" {
		g, err := lookupGroup(group)
		if err != nil {
			return nil, err
		}
		gid = g
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("api: socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("api: %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("api: %s: %w", path, ErrRunning)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("api: removing stale socket: %w", err)
		}
	}
	tmpDir, err := os.MkdirTemp(dir, ".inspectd-sock-")
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("api: listen: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	mode := os.FileMode(0o600)
	if gid >= 0 {
		mode = 0o660
		if err := os.Chown(tmp, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("api: socket group: %w", err)
		}
	}
	if err := os.Chmod(tmp, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api: socket mode: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api: %w", err)
	}
	return ln, nil
}

func lookupGroup(name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("api: socket group %q: %w", name, err)
	}
	n, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("api: socket group %q has gid %q", name, g.Gid)
	}
	return n, nil
}

type route struct {
	method string
	h      func(w http.ResponseWriter, r *http.Request)
}

// Handler returns the API's HTTP handler (NewServer serves it on the
// socket; tests may serve it elsewhere).
func (s *Server) Handler() http.Handler {
	routes := map[string]route{
		"/v1/version":      {http.MethodGet, s.version},
		"/v1/sessions":     {http.MethodGet, s.sessions},
		"/v1/expectations": {http.MethodGet, s.expectations},
		"/v1/stats":        {http.MethodGet, s.stats},
		"/v1/rules":        {http.MethodGet, s.rules},
		"/v1/watch":        {http.MethodGet, s.watch},
		"/v1/clear":        {http.MethodPost, s.clear},
		"/v1/reload":       {http.MethodPost, s.reload},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(VersionHeader, s.opt.Version)
		rt, ok := routes[r.URL.Path]
		if !ok {
			if strings.HasPrefix(r.URL.Path, "/v") && !strings.HasPrefix(r.URL.Path, "/v1/") {
				writeError(w, http.StatusNotFound, "unknown API version in %q: this daemon speaks %s", r.URL.Path, APIVersion)
				return
			}
			writeError(w, http.StatusNotFound, "no such endpoint %q", r.URL.Path)
			return
		}
		if r.Method != rt.method {
			w.Header().Set("Allow", rt.method)
			writeError(w, http.StatusMethodNotAllowed, "%s wants %s, not %s", r.URL.Path, rt.method, r.Method)
			return
		}
		rt.h(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, Error{Error: fmt.Sprintf(format, args...)})
}

// noQuery answers 400 and returns false when r has query parameters.
func noQuery(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.RawQuery != "" {
		writeError(w, http.StatusBadRequest, "%s takes no parameters", r.URL.Path)
		return false
	}
	return true
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	if noQuery(w, r) {
		writeJSON(w, http.StatusOK, VersionInfo{Version: s.opt.Version, API: APIVersion, Started: s.started})
	}
}

func (s *Server) sessions(w http.ResponseWriter, r *http.Request) {
	f, err := ParseSessionFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	out := []inspect.SessionInfo{}
	for _, si := range s.b.Sessions() {
		if f.Match(&si) {
			out = append(out, si)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) expectations(w http.ResponseWriter, r *http.Request) {
	if !noQuery(w, r) {
		return
	}
	out := s.b.Expectations()
	if out == nil {
		out = []inspect.ExpectInfo{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	if noQuery(w, r) {
		writeJSON(w, http.StatusOK, s.b.Stats())
	}
}

func (s *Server) rules(w http.ResponseWriter, r *http.Request) {
	if noQuery(w, r) {
		writeJSON(w, http.StatusOK, s.b.Rules())
	}
}

// EventKinds are the kinds a watch may select.
var EventKinds = []string{"session-open", "session-close", "expect-add", "expect-use", "expect-expire", "deny", "note"}

// ParseKinds checks a comma-separated list of event kinds; "" selects all
// (nil).
func ParseKinds(list string) (map[string]bool, error) {
	if list == "" {
		return nil, nil
	}
	m := map[string]bool{}
	for _, k := range strings.Split(list, ",") {
		k = strings.TrimSpace(k)
		ok := false
		for _, known := range EventKinds {
			ok = ok || k == known
		}
		if !ok {
			return nil, fmt.Errorf("unknown event kind %q (want %s)", k, strings.Join(EventKinds, ", "))
		}
		m[k] = true
	}
	return m, nil
}

func (s *Server) watch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		if k != "kind" {
			writeError(w, http.StatusBadRequest, "unknown parameter %q (watch takes kind=KIND,...)", k)
			return
		}
	}
	if len(q["kind"]) > 1 {
		writeError(w, http.StatusBadRequest, "kind given %d times (give the kinds once: kind=deny,note)", len(q["kind"]))
		return
	}
	kinds, err := ParseKinds(q.Get("kind"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming not supported")
		return
	}
	if s.watchers.Add(1) > MaxWatchers {
		s.watchers.Add(-1)
		// The connection goes too, lest a refused client keep a place.
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusTooManyRequests, "too many watch streams open (at most %d)", MaxWatchers)
		return
	}
	defer s.watchers.Add(-1)
	// The stream lasts as long as its client wants: it lifts the server's
	// write timeout. The error is of no use: this fails only where there is
	// no deadline to lift (a recorder in tests) or the connection is gone,
	// which the first write reports.
	http.NewResponseController(w).SetWriteDeadline(time.Time{})
	wt := s.b.Watch()
	defer wt.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	enc := json.NewEncoder(w)
	var reported uint64
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-wt.C():
			if lost := wt.Lost(); lost != reported {
				if enc.Encode(Event{Kind: KindLost, Time: ev.Time, Lost: lost - reported}) != nil {
					return
				}
				reported = lost
			}
			if e := EventOf(ev); kinds == nil || kinds[e.Kind] {
				if enc.Encode(e) != nil {
					return
				}
			}
			if len(wt.C()) == 0 {
				fl.Flush()
			}
		}
	}
}

func (s *Server) clear(w http.ResponseWriter, r *http.Request) {
	var req ClearRequest
	if !decodeBody(w, r, &req) {
		return
	}
	var (
		res ClearResult
		err error
	)
	switch {
	case req.All && req.ID != 0:
		writeError(w, http.StatusBadRequest, `give "id" or "all", not both`)
		return
	case req.All:
		res, err = s.b.ClearAll()
	case req.ID != 0:
		res, err = s.b.Clear(req.ID)
	default:
		writeError(w, http.StatusBadRequest, `give a session "id" (a number above 0) or "all": true`)
		return
	}
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "no session %d (see 'inspectd sessions')", req.ID)
	case err != nil:
		writeError(w, http.StatusInternalServerError, "%v", err)
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if !noQuery(w, r) {
		return
	}
	res, err := s.b.Reload()
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "reload refused, the old rules stay in force: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// decodeBody reads one JSON object into v, answering 400 on bad JSON,
// unknown fields, trailing data or a body over maxBody.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if !noQuery(w, r) {
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			writeError(w, http.StatusRequestEntityTooLarge, "request body over %d bytes", maxBody)
		case errors.Is(err, io.EOF):
			writeError(w, http.StatusBadRequest, "empty request body: want a JSON object")
		default:
			writeError(w, http.StatusBadRequest, "bad request body: %v", err)
		}
		return false
	}
	// More reports false before a stray "}" or "]": decode once more.
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "bad request body: data after the JSON object")
		return false
	}
	return true
}
