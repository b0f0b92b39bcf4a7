package conntrack

import "github.com/inspectd/inspectd/internal/decode"

// tcpPeer flags.
const (
	peerWScale   uint8 = 1 << iota // sent the window scale option on its SYN
	peerSeenFin                    // sent a FIN
	peerFinAcked                   // its FIN was acknowledged
)

// minAckWindow is the least distance an ACK may lag behind the data it
// acknowledges (Linux's MAXACKWINDOW floor).
const minAckWindow = 66000

// Reasons for TCP drops. They are verdict reasons.
const (
	whyHandshake   = "tcp: handshake not finished"
	whySynAckAck   = "tcp: SYN-ACK does not acknowledge the SYN"
	whyResetSynAck = "tcp: reset does not acknowledge the SYN"
	whyAhead       = "tcp: segment beyond the window"
	whyOld         = "tcp: segment before the window"
	whyAckAhead    = "tcp: acknowledges data never sent"
	whyAckOld      = "tcp: acknowledgement too far behind"
	whySynOpen     = "tcp: SYN on an established session"
)

func seqLT(a, b uint32) bool { return int32(a-b) < 0 }
func seqGT(a, b uint32) bool { return int32(a-b) > 0 }

// segEnd is the sequence number after the segment: SYN and FIN count one.
func segEnd(p *decode.Packet) uint32 {
	end := p.Seq + uint32(len(p.Payload))
	if p.Flags&decode.TCPSyn != 0 {
		end++
	}
	if p.Flags&decode.TCPFin != 0 {
		end++
	}
	return end
}

// init sets up a peer from its SYN or SYN-ACK.
func (pe *tcpPeer) init(p *decode.Packet) {
	*pe = tcpPeer{end: segEnd(p), acked: p.Seq, maxWin: max(uint32(p.Window), 1)}
	pe.maxEnd = pe.end
	if p.HasWScale {
		pe.flags |= peerWScale
		pe.scale = min(p.WScale, 14)
	}
}

// pickUp sets up a peer from a segment in the middle of a connection whose
// handshake was not seen; the window scale is unknown, so the session is
// tracked liberally.
func (pe *tcpPeer) pickUp(p *decode.Packet) {
	*pe = tcpPeer{end: segEnd(p), acked: p.Seq, maxWin: max(uint32(p.Window), 1)}
	pe.maxEnd = pe.end + pe.maxWin
}

// trackTCP checks segment p from direction dir against session s and
// updates the state. It returns "" or the reason to drop the segment; a
// dropped segment changes nothing. unchanged is set for a segment that
// passes but changes nothing (see Table.Track).
func (t *Table) trackTCP(s *Session, dir Dir, p *decode.Packet) (why string, unchanged bool) {
	f := p.Flags
	syn, ack, rst, fin := f&decode.TCPSyn != 0, f&decode.TCPAck != 0, f&decode.TCPRst != 0, f&decode.TCPFin != 0
	snd, rcv := &s.tcp[dir], &s.tcp[dir^1]

	switch s.State {
	case StateSynSent:
		if s.Offloaded && !syn && (ack || rst) {
			// Handed to the kernel fast path at its SYN: the kernel
			// carried the SYN-ACK and the handshake's last ACK (its own
			// tracker checked them). A later segment with ACK or RST (a
			// FIN, a reset) shows the handshake over: pick up the side
			// never seen and track on.
			if snd.maxWin == 0 {
				snd.pickUp(p)
			}
			s.State = StateEstablished
			t.leaveHalfOpen(s)
			break
		}
		if dir == Original {
			switch {
			case syn && !ack:
				snd.init(p) // retransmitted SYN, or a new ISN after a restart
				return "", false
			case rst:
				// The client gives up its attempt (sequence ISN+1), or
				// answers an ACK from a server still holding an older
				// connection on these ports: that RST carries the ACK's
				// number and resets the server's old connection; it passes
				// but does not end this session, whose next SYN re-arms it.
				if p.Seq == snd.end {
					t.closeTCP(s)
				}
				return "", false
			}
			return whyHandshake, false
		}
		switch {
		case syn && ack:
			if p.Ack != rcv.end {
				return whySynAckAck, false
			}
			s.tcp[Reply].init(p)
			negotiateScale(s)
			t.updateTCP(s, dir, p)
			s.State = StateSynRecv
			return "", false
		case syn: // simultaneous open
			s.tcp[Reply].init(p)
			negotiateScale(s)
			s.State = StateSynRecv
			return "", false
		case rst:
			if ack && p.Ack == rcv.end {
				t.closeTCP(s)
				return "", false
			}
			return whyResetSynAck, false
		case ack && !fin && len(p.Payload) == 0:
			// A server whose socket still holds an older connection on
			// these ports (TIME_WAIT) answers a reused port's SYN with an
			// ACK for the old one; the client resets it and tries again.
			// Like Linux, let it through and change nothing (Linux lets
			// any ACK through here; we keep to bare ones).
			return "", false
		}
		return whyHandshake, false
	case StateSynRecv:
		if syn {
			// A retransmitted SYN or SYN-ACK, or the SYN-ACKs of a
			// simultaneous open: the ISN must not change.
			if p.Seq+1 != snd.end {
				return whySynOpen, false
			}
			if ack {
				if why := t.checkWindow(s, dir, p); why != "" {
					return why, false
				}
				t.updateTCP(s, dir, p)
			}
			return "", false
		}
	default:
		if syn {
			if ack && p.Seq+1 == snd.end {
				return "", false // a retransmitted SYN-ACK: harmless
			}
			if !ack && dir == Original && s.State < StateClosed {
				// The client lost the connection (a router reloaded)
				// and opens it again from the same port. Like Linux,
				// let the SYN pass and change nothing: the server
				// answers with a challenge ACK (RFC 5961), the client
				// resets the old connection with it, which ends the
				// session, and its next SYN opens a new one.
				return "", true
			}
			return whySynOpen, false
		}
	}

	if why := t.checkWindow(s, dir, p); why != "" {
		return why, false
	}
	if rst && p.Seq != snd.end && p.Seq != snd.acked && !s.PickedUp && !s.Offloaded {
		// A reset in the window but not at the sender's next sequence
		// number (nor where the receiver last acknowledged) is answered
		// by the receiver with a challenge ACK (RFC 5961) and ends
		// nothing: it passes and changes nothing here either (Linux does
		// the same), so a blind reset that guessed a number in the
		// window cannot cut a transfer. Where the engine does not follow
		// the sequence numbers (a session picked up, or carried by the
		// kernel fast path, whose own tracker checked the reset), any
		// reset that passed ends it.
		return "", true
	}
	t.updateTCP(s, dir, p)

	switch {
	case rst:
		t.closeTCP(s)
	case s.State == StateSynRecv && ack && p.Ack == rcv.end:
		s.State = StateEstablished
		t.leaveHalfOpen(s)
	}
	if fin && s.State >= StateSynRecv && s.State < StateClosed {
		snd.flags |= peerSeenFin
		if s.State < StateFinWait {
			s.State = StateFinWait
		}
		t.leaveHalfOpen(s)
	}
	if ack && rcv.flags&peerSeenFin != 0 && !seqLT(p.Ack, rcv.end) {
		rcv.flags |= peerFinAcked
	}
	switch {
	case s.State == StateClosed:
	case snd.flags&rcv.flags&peerFinAcked != 0:
		s.State = StateTimeWait
	case snd.flags&rcv.flags&peerSeenFin != 0 && s.State == StateFinWait:
		s.State = StateClosing
	}
	return "", false
}

// negotiateScale applies RFC 7323: window scaling is in force only when
// both SYNs carried the option.
func negotiateScale(s *Session) {
	if s.tcp[0].flags&s.tcp[1].flags&peerWScale == 0 {
		s.tcp[0].scale, s.tcp[1].scale = 0, 0
	}
}

// checkWindow applies the four window conditions of Rooij's scheme, as the
// Linux tracker does: the segment lies inside what the receiver allowed,
// is not older than the receiver's window, and acknowledges data that was
// sent and not too long ago. Sessions that cannot be checked strictly
// (picked up mid-stream, offloaded to the kernel, or out of step after a
// gap in a capture) resynchronise instead.
func (t *Table) checkWindow(s *Session, dir Dir, p *decode.Packet) string {
	snd, rcv := &s.tcp[dir], &s.tcp[dir^1]
	if s.PickedUp || s.Offloaded || rcv.maxWin == 0 {
		return ""
	}
	seq, end := p.Seq, segEnd(p)
	ackNo := rcv.end
	if p.Flags&decode.TCPAck != 0 {
		ackNo = p.Ack
	}
	maxAck := max(snd.maxWin, minAckWindow)
	var why string
	switch {
	case seqGT(seq, snd.maxEnd):
		why = whyAhead
	case seqLT(end, snd.end-rcv.maxWin):
		return whyOld
	case seqGT(ackNo, rcv.end):
		why = whyAckAhead
	case seqLT(ackNo, rcv.end-maxAck):
		return whyAckOld
	default:
		snd.ahead = 0
		return ""
	}
	// Beyond the window: a gap (packets the engine never saw) or an
	// injected segment. With gap recovery on, several such segments in a
	// row resynchronise the direction.
	if t.cfg.GapRecovery > 0 {
		snd.ahead++
		if int(snd.ahead) >= t.cfg.GapRecovery {
			snd.ahead = 0
			return ""
		}
	}
	return why
}

// updateTCP records an accepted segment (after checkWindow).
func (t *Table) updateTCP(s *Session, dir Dir, p *decode.Packet) {
	snd, rcv := &s.tcp[dir], &s.tcp[dir^1]
	win := uint32(p.Window)
	if p.Flags&decode.TCPSyn == 0 {
		win <<= snd.scale
	}
	if snd.maxWin < win {
		snd.maxWin = win
	}
	end := segEnd(p)
	if seqGT(end, snd.end) {
		snd.end = end
	}
	if seqGT(end, snd.maxEnd) {
		snd.maxEnd = end
	}
	if p.Flags&decode.TCPAck != 0 {
		if seqGT(p.Ack, rcv.end) {
			rcv.end = p.Ack // resynchronised after a gap: the peer saw more
		}
		if seqGT(p.Ack, rcv.acked) {
			rcv.acked = p.Ack
		}
		if top := p.Ack + max(win, 1); seqGT(top, rcv.maxEnd) {
			rcv.maxEnd = top
		}
	}
}

func (t *Table) closeTCP(s *Session) {
	s.State = StateClosed
	t.leaveHalfOpen(s)
}
