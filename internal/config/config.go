// Package config reads pktpipe's YAML configuration file and applies it to
// the command's flag set, so the file can say everything the flags can and
// means exactly what the flags mean.
//
// A key is a flag's name with "-" written "_" (rotate-size → rotate_size),
// or an alias for a one-letter flag (read → -r, interface → -i, output →
// -o). A scalar value is passed to the flag as it would be on the command
// line ("256M", "1h", "4"); a list is allowed for repeatable flags only
// (read: [a.pcap, b.pcap]). Keys the caller declares as extras (filter) are
// returned instead of set. Unknown keys, duplicate keys, lists for
// single-value flags, empty values and values the flag refuses are errors
// that name the file and line. Flags given on the command line win over
// the file: Apply leaves them alone.
//
// gopkg.in/yaml.v3 is used through its Node API, which keeps the line of
// every key and value; decoding into a struct with KnownFields(true) would
// also report unknown keys with lines, but would need a second copy of
// every flag as a struct field.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Entry is one key of the file.
type Entry struct {
	Key    string
	Values []string
	List   bool // written as a YAML sequence
	Line   int
}

// File is a parsed configuration file.
type File struct {
	Path    string
	Entries []Entry
}

// Error is a problem in the file at a line.
type Error struct {
	Path string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

// MaxSize is the largest config file Load reads: a real one is a few KiB,
// and a bound keeps /dev/zero or a wrong file from exhausting memory.
const MaxSize = 1 << 20

// Load reads and parses path, a regular file of at most MaxSize bytes.
func Load(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	} else if !fi.Mode().IsRegular() {
		return nil, &Error{Path: path, Msg: "not a regular file"}
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(b) > MaxSize {
		return nil, &Error{Path: path, Msg: fmt.Sprintf("larger than %d bytes: not a pktpipe config file", MaxSize)}
	}
	return Parse(path, b)
}

// Parse parses a file's contents; name is used in errors.
func Parse(name string, data []byte) (*File, error) {
	f := &File{Path: name}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return f, nil // empty file
		}
		// yaml.v3 errors read "yaml: line N: ..."
		return nil, &Error{Path: name, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var more yaml.Node
	if err := dec.Decode(&more); err == nil {
		return nil, &Error{Path: name, Line: more.Line, Msg: "a second YAML document; the file holds one mapping"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return f, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return f, nil // only comments
	}
	if root.Kind != yaml.MappingNode {
		return nil, &Error{Path: name, Line: root.Line, Msg: "the file must be a mapping of keys to values (key: value)"}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, &Error{Path: name, Line: k.Line, Msg: "a key must be a plain name"}
		}
		if prev, ok := seen[k.Value]; ok {
			return nil, &Error{Path: name, Line: k.Line, Msg: fmt.Sprintf("duplicate key %q (first on line %d)", k.Value, prev)}
		}
		seen[k.Value] = k.Line
		e := Entry{Key: k.Value, Line: k.Line}
		switch v.Kind {
		case yaml.ScalarNode:
			if v.Tag == "!!null" {
				return nil, &Error{Path: name, Line: v.Line, Msg: fmt.Sprintf("%s: no value", k.Value)}
			}
			e.Values = []string{v.Value}
		case yaml.SequenceNode:
			e.List = true
			for _, item := range v.Content {
				if item.Kind != yaml.ScalarNode || item.Tag == "!!null" {
					return nil, &Error{Path: name, Line: item.Line, Msg: fmt.Sprintf("%s: list items must be plain values", k.Value)}
				}
				e.Values = append(e.Values, item.Value)
			}
		case yaml.AliasNode:
			return nil, &Error{Path: name, Line: v.Line, Msg: fmt.Sprintf("%s: YAML aliases are not supported", k.Value)}
		default:
			return nil, &Error{Path: name, Line: v.Line, Msg: fmt.Sprintf("%s: want a value or a list, not a mapping", k.Value)}
		}
		f.Entries = append(f.Entries, e)
	}
	return f, nil
}

// Schema says how keys map to a flag set.
type Schema struct {
	// Aliases maps keys to flag names for flags whose key is not their
	// name with "_" for "-" (read → r).
	Aliases map[string]string
	// Extras are keys that are not flags (filter); Apply returns them.
	Extras []string
	// Hidden are flags the file cannot set (config).
	Hidden []string
	// Repeatable says whether a flag takes several values (a list).
	Repeatable func(*flag.Flag) bool
}

// Key is the file's key for a flag.
func (s *Schema) Key(flagName string) string {
	for k, n := range s.Aliases {
		if n == flagName {
			return k
		}
	}
	return strings.ReplaceAll(flagName, "-", "_")
}

func (s *Schema) flagName(fs *flag.FlagSet, key string) (string, bool) {
	if n, ok := s.Aliases[key]; ok {
		return n, fs.Lookup(n) != nil
	}
	// rotate_size, or rotate-size spelt like the flag.
	n := strings.ReplaceAll(key, "_", "-")
	if len(n) == 1 || contains(s.Hidden, n) || fs.Lookup(n) == nil {
		return "", false
	}
	return n, true
}

// Keys lists every key the schema accepts, sorted.
func (s *Schema) Keys(fs *flag.FlagSet) []string {
	var keys []string
	fs.VisitAll(func(f *flag.Flag) {
		if contains(s.Hidden, f.Name) || (len(f.Name) == 1 && s.Key(f.Name) == f.Name) {
			return
		}
		keys = append(keys, s.Key(f.Name))
	})
	keys = append(keys, s.Extras...)
	sort.Strings(keys)
	return keys
}

// Apply sets on fs every entry whose flag the command line did not set
// (skip says which: the names fs.Visit reports, and any the caller groups
// with them), and returns the extras' values by key. It stops at the first
// error, which names the line.
func (s *Schema) Apply(f *File, fs *flag.FlagSet, skip func(flagName string) bool) (map[string][]string, error) {
	extras := map[string][]string{}
	for _, e := range f.Entries {
		if contains(s.Extras, e.Key) {
			extras[e.Key] = e.Values
			continue
		}
		name, ok := s.flagName(fs, e.Key)
		if !ok {
			msg := fmt.Sprintf("unknown key %q", e.Key)
			if near := nearest(e.Key, s.Keys(fs)); near != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", near)
			}
			return nil, &Error{Path: f.Path, Line: e.Line, Msg: msg}
		}
		fl := fs.Lookup(name)
		rep := s.Repeatable != nil && s.Repeatable(fl)
		if e.List && !rep {
			return nil, &Error{Path: f.Path, Line: e.Line, Msg: fmt.Sprintf("%s takes one value, not a list", e.Key)}
		}
		if skip != nil && skip(name) {
			continue
		}
		for _, v := range e.Values {
			if err := fs.Set(name, v); err != nil {
				return nil, &Error{Path: f.Path, Line: e.Line, Msg: fmt.Sprintf("%s: invalid value %q: %v", e.Key, v, err)}
			}
		}
	}
	return extras, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// nearest returns the known key closest to key, if it is close.
func nearest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := distance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the Levenshtein distance.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Item is one line of an effective configuration.
type Item struct {
	Key     string
	Values  []string
	List    bool
	String  bool   // a string-typed setting: always written as a string
	Comment string // where the value came from
}

// Format writes items as a YAML mapping that Parse reads back to the same
// values, with each item's comment at the end of its line.
func Format(items []Item) ([]byte, error) {
	root := &yaml.Node{Kind: yaml.MappingNode}
	for _, it := range items {
		k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: it.Key, LineComment: it.Comment}
		var v *yaml.Node
		if it.List {
			v = &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, x := range it.Values {
				v.Content = append(v.Content, scalar(x, it.String))
			}
		} else {
			v = scalar(strings.Join(it.Values, ","), it.String)
		}
		root.Content = append(root.Content, k, v)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// scalar writes v plain when YAML reads it back as the same text (a number,
// a boolean, a plain word) and quoted otherwise.
func scalar(v string, isString bool) *yaml.Node {
	tag := "!!str"
	if !isString {
		var n yaml.Node
		if yaml.Unmarshal([]byte(v), &n) == nil && len(n.Content) == 1 {
			switch t := n.Content[0].Tag; t {
			case "!!int", "!!float", "!!bool":
				if n.Content[0].Value == v {
					tag = t
				}
			}
		}
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: v}
}
