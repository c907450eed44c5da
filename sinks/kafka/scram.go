package kafka

// A SCRAM client (RFC 5802, RFC 7677) for kafka-go's sasl.Mechanism, on
// the standard library alone: kafka-go's own sasl/scram pulls in modules
// this repository does not otherwise need. Names and passwords are used
// as given (no SASLprep), which is exact for ASCII credentials.

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go/sasl"
)

type scramHash struct {
	name string
	new  func() hash.Hash
}

var (
	scramSHA256 = scramHash{"SCRAM-SHA-256", sha256.New}
	scramSHA512 = scramHash{"SCRAM-SHA-512", sha512.New}
)

type scramMechanism struct {
	h          scramHash
	user, pass string
}

func newSCRAM(h scramHash, user, pass string) sasl.Mechanism {
	return &scramMechanism{h: h, user: user, pass: pass}
}

func (m *scramMechanism) Name() string { return m.h.name }

func (m *scramMechanism) Start(context.Context) (sasl.StateMachine, []byte, error) {
	var nonce [24]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, nil, err
	}
	s, first := m.start(base64.RawStdEncoding.EncodeToString(nonce[:]))
	return s, first, nil
}

func (m *scramMechanism) start(cnonce string) (*scramSession, []byte) {
	name := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(m.user)
	s := &scramSession{m: m, cnonce: cnonce}
	s.clientFirstBare = "n=" + name + ",r=" + cnonce
	return s, []byte("n,," + s.clientFirstBare)
}

type scramSession struct {
	m               *scramMechanism
	cnonce          string
	clientFirstBare string
	serverSig       []byte
	step            int
}

func (s *scramSession) mac(key []byte, msg string) []byte {
	h := hmac.New(s.m.h.new, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

func (s *scramSession) Next(_ context.Context, challenge []byte) (bool, []byte, error) {
	s.step++
	switch s.step {
	case 1:
		return s.clientFinal(string(challenge))
	case 2:
		attrs := scramAttrs(string(challenge))
		if e, ok := attrs["e"]; ok {
			return false, nil, fmt.Errorf("scram: server refused: %s", e)
		}
		v, err := base64.StdEncoding.DecodeString(attrs["v"])
		if err != nil || subtle.ConstantTimeCompare(v, s.serverSig) != 1 {
			return false, nil, errors.New("scram: server signature does not verify")
		}
		return true, nil, nil
	}
	return false, nil, errors.New("scram: unexpected extra challenge")
}

func (s *scramSession) clientFinal(serverFirst string) (bool, []byte, error) {
	attrs := scramAttrs(serverFirst)
	nonce, saltB64, iterStr := attrs["r"], attrs["s"], attrs["i"]
	if !strings.HasPrefix(nonce, s.cnonce) || len(nonce) == len(s.cnonce) {
		return false, nil, errors.New("scram: server nonce does not extend ours")
	}
	salt, err := base64.StdEncoding.DecodeString(saltB64)
	if err != nil {
		return false, nil, fmt.Errorf("scram: salt: %w", err)
	}
	iter, err := strconv.Atoi(iterStr)
	if err != nil || iter < 1 {
		return false, nil, fmt.Errorf("scram: iteration count %q", iterStr)
	}
	salted, err := pbkdf2.Key(s.m.h.new, s.m.pass, salt, iter, s.m.h.new().Size())
	if err != nil {
		return false, nil, err
	}
	clientKey := s.mac(salted, "Client Key")
	stored := s.m.h.new()
	stored.Write(clientKey)
	withoutProof := "c=biws,r=" + nonce // biws = base64("n,,"): no channel binding
	authMsg := s.clientFirstBare + "," + serverFirst + "," + withoutProof
	proof := s.mac(stored.Sum(nil), authMsg)
	for i := range proof {
		proof[i] ^= clientKey[i]
	}
	s.serverSig = s.mac(s.mac(salted, "Server Key"), authMsg)
	return false, []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

func scramAttrs(msg string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(msg, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && len(k) == 1 {
			out[k] = v
		}
	}
	return out
}
