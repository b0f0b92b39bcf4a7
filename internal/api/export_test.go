package api

import "net"

// Limits are a server's timeouts and connection cap, for tests that wait
// for them to expire.
type Limits = limits

// WithLimits returns opt with l in place of the default limits.
func WithLimits(opt Options, l Limits) Options {
	opt.limits = l
	return opt
}

// WrapListener makes s accept its connections through wrap(its listener);
// call it before Serve.
func WrapListener(s *Server, wrap func(net.Listener) net.Listener) { s.ln = wrap(s.ln) }
