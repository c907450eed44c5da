// Package registry holds what pktpipe's plug-in registries share: a named
// set of component specs that refuses duplicates, the Options interface
// through which a component owns its flags (and so its YAML keys), and the
// usage error that a component returns for a bad setting.
//
// The registries themselves sit beside the interfaces they hold:
// stages/flow for analyzers, pipeline for sources and sinks. A component
// registers itself in its package's init; the packages stages/all,
// sources/all and sinks/all import every component, so adding one is a new
// package plus one import line (the shape of Telegraf's plugins/*/all).
package registry

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Options are a component's user-facing settings. RegisterFlags declares
// them on the command's flag set (the config file's keys are the flags'
// names), with their defaults; the constructor then reads the struct.
type Options interface {
	RegisterFlags(fs *flag.FlagSet)
}

// Validator is implemented by Options that check themselves once the flags
// and the config file have been parsed. Its error is a usage error.
type Validator interface {
	Validate() error
}

// NoOptions is the Options of a component without settings.
type NoOptions struct{}

// RegisterFlags declares nothing.
func (NoOptions) RegisterFlags(*flag.FlagSet) {}

// Set is a registry of specs by name. Adding a name twice panics: it is a
// programming error, and it shows at start, not as a silent overwrite.
type Set[T any] struct {
	kind  string // "analyzer", "sink", "source": for messages
	mu    sync.RWMutex
	specs map[string]T
}

// NewSet returns an empty registry of components of kind.
func NewSet[T any](kind string) *Set[T] { return &Set[T]{kind: kind, specs: map[string]T{}} }

// Add registers spec under name.
func (s *Set[T]) Add(name string, spec T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name == "" {
		panic(fmt.Sprintf("pktpipe: %s registered without a name", s.kind))
	}
	if _, dup := s.specs[name]; dup {
		panic(fmt.Sprintf("pktpipe: %s %q registered twice", s.kind, name))
	}
	s.specs[name] = spec
}

// Remove unregisters name (tests that register throw-away components).
func (s *Set[T]) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.specs, name)
}

// Get returns the spec registered under name.
func (s *Set[T]) Get(name string) (T, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.specs[name]
	return t, ok
}

// Names lists the registered names, sorted.
func (s *Set[T]) Names() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := make([]string, 0, len(s.specs))
	for n := range s.specs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// UsageError is an error in what the user asked for: a bad flag value, an
// unknown name, a malformed URL. The command exits 2 on it.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError with a formatted message (%w wraps).
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// Usage marks err as a usage error (nil stays nil).
func Usage(err error) error {
	if err == nil || IsUsage(err) {
		return err
	}
	return &UsageError{Err: err}
}

// IsUsage reports whether err is, or wraps, a UsageError.
func IsUsage(err error) bool {
	var u *UsageError
	return errors.As(err, &u)
}

// ByteSize is a flag value for sizes: "65536", "64K", "100M", "1G" (powers
// of 1024; a trailing "B" or "iB" is allowed).
type ByteSize int64

func (b *ByteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

// Set parses v.
func (b *ByteSize) Set(v string) error {
	mult := int64(1)
	s := strings.ToUpper(strings.TrimSpace(v))
	s = strings.TrimSuffix(s, "B")
	s = strings.TrimSuffix(s, "I")
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return fmt.Errorf("not a size: %q (use e.g. 65536, 100M, 1G)", v)
	}
	*b = ByteSize(n * mult)
	return nil
}

// Strings is a repeatable string flag: each use appends (-r a -r b).
type Strings []string

func (s *Strings) String() string { return strings.Join(*s, ",") }

// Set appends v.
func (s *Strings) Set(v string) error { *s = append(*s, v); return nil }

// ShardAware is implemented by options of a component whose output would
// not split by flow: an aggregate over many flows (scan detection by
// source) sees only its share under --shard. The app calls ForShards when
// the run keeps one shard of n > 1; the component adapts (or turns the
// aggregate off) and returns a note for the log ("" = nothing changed).
type ShardAware interface {
	ForShards(n int) (note string)
}
