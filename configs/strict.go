package configs

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var (
	nodeType     = reflect.TypeFor[yaml.Node]()
	durationType = reflect.TypeFor[time.Duration]()
	yamlLineRE   = regexp.MustCompile(`line (\d+): (.*)`)
	envRE        = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)
)

// decodeStrict checks every key of n against out's yaml tags (so a typo is
// reported with its own line and the closest valid key), then decodes.
// yaml's own KnownFields cannot do this for blocks decoded from a Node.
func decodeStrict(file, path string, n *yaml.Node, out any) error {
	if err := checkKeys(file, path, n, reflect.TypeOf(out).Elem()); err != nil {
		return err
	}
	if err := n.Decode(out); err != nil {
		return decodeError(file, path, err)
	}
	return nil
}

func checkKeys(file, path string, n *yaml.Node, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch {
	case t == nodeType:
		return nil // decoded later by the owner of the block
	case t == durationType:
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" && n.Value != "0" {
			return &Error{File: file, Line: n.Line, Key: path, Msg: fmt.Sprintf("duration %s has no unit: write e.g. %ss or %sms", n.Value, n.Value, n.Value)}
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if n.ShortTag() == "!!null" {
				return nil
			}
			return &Error{File: file, Line: n.Line, Key: path, Msg: fmt.Sprintf("expected a mapping of keys (%s), got %s", strings.Join(yamlKeys(t), ", "), describe(n))}
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if !f.IsExported() || name == "-" || name == "" {
				continue
			}
			fields[name] = f.Type
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := joinPath(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				msg := fmt.Sprintf("unknown key %q", k.Value)
				if s := closest(k.Value, yamlKeys(t)); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				msg += "; valid keys here: " + strings.Join(yamlKeys(t), ", ")
				return &Error{File: file, Line: k.Line, Key: key, Msg: msg}
			}
			if seen[k.Value] {
				return &Error{File: file, Line: k.Line, Key: key, Msg: "key given twice"}
			}
			seen[k.Value] = true
			if err := checkKeys(file, key, v, ft); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			if n.ShortTag() == "!!null" {
				return nil
			}
			return &Error{File: file, Line: n.Line, Key: path, Msg: fmt.Sprintf("expected a list, got %s", describe(n))}
		}
		for i, item := range n.Content {
			if err := checkKeys(file, fmt.Sprintf("%s[%d]", path, i), item, t.Elem()); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if err := checkKeys(file, joinPath(path, n.Content[i].Value), n.Content[i+1], t.Elem()); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return "something else"
}

func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if f.IsExported() && name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	sort.Strings(keys)
	return keys
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// closest returns the candidate nearest to s when it is near enough to be a
// plausible typo.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), c)
		if d < bestD || (strings.HasPrefix(c, s) && len(s) >= 3 && bestD > 1) {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func decodeError(file, path string, err error) error {
	var te *yaml.TypeError
	msg := err.Error()
	if ok := asTypeError(err, &te); ok && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: line, Key: path, Msg: m[2]}
	}
	return &Error{File: file, Key: path, Msg: strings.TrimPrefix(msg, "yaml: ")}
}

func asTypeError(err error, te **yaml.TypeError) bool {
	t, ok := err.(*yaml.TypeError)
	if ok {
		*te = t
	}
	return ok
}

func yamlSyntaxError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: line, Msg: "YAML syntax: " + m[2]}
	}
	return &Error{File: file, Msg: "YAML syntax: " + msg}
}

// expandEnv substitutes ${NAME} and ${NAME:-default} in scalar values. It
// works on the parsed tree, so a secret holding ':' or '#' cannot change
// the document's structure.
func expandEnv(file string, n *yaml.Node, lookup func(string) (string, bool)) error {
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
		var missing string
		n.Value = envRE.ReplaceAllStringFunc(n.Value, func(m string) string {
			sub := envRE.FindStringSubmatch(m)
			if v, ok := lookup(sub[1]); ok && v != "" {
				return v
			}
			if sub[2] != "" {
				return sub[3]
			}
			if missing == "" {
				missing = sub[1]
			}
			return ""
		})
		if missing != "" {
			return &Error{File: file, Line: n.Line, Msg: fmt.Sprintf("environment variable %s is not set (export it, or write ${%s:-default})", missing, missing)}
		}
		if n.Style == 0 {
			n.Tag = "" // re-resolve: ${BAUD} expanding to 9600 is an int
		}
	}
	for _, c := range n.Content {
		if err := expandEnv(file, c, lookup); err != nil {
			return err
		}
	}
	return nil
}

func recordLines(n *yaml.Node, path string, lines map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := joinPath(path, n.Content[i].Value)
			lines[p] = n.Content[i].Line
			recordLines(n.Content[i+1], p, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = c.Line
			recordLines(c, p, lines)
		}
	}
}
