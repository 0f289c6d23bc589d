package schemafields

import (
	"fmt"
	"strconv"
	"strings"
)

// stepKind is one step from a record's root towards a field, in schema terms.
type stepKind uint8

const (
	stepField    stepKind = iota // a record's (message's, object's) field of this name
	stepElement                  // an array's (repeated field's) element
	stepMapValue                 // a map's value
)

type step struct {
	kind stepKind
	name string
}

func fieldStep(name string) step { return step{kind: stepField, name: name} }

var (
	elementStep  = step{kind: stepElement}
	mapValueStep = step{kind: stepMapValue}
)

// with is path and one more step, in a new slice (paths are shared between branches).
func with(path []step, s step) []step {
	out := make([]step, len(path), len(path)+1)
	copy(out, path)
	return append(out, s)
}

// schemaPath renders a schema path as a configured path would name it: /customer/ssn,
// /phones/*/number. Schema names only, never record data: fit for errors.
func schemaPath(path []step) string {
	if len(path) == 0 {
		return `"" (the whole record)`
	}
	var b strings.Builder
	for _, s := range path {
		if s.kind == stepField {
			pushToken(&b, s.name)
		} else {
			b.WriteString("/*")
		}
	}
	return b.String()
}

// pattern is a configured field path: a JSON Pointer by schema field names, "*" for
// every element, map value or field.
type pattern struct {
	text   string
	tokens []*string // nil: "*"
}

func parsePattern(text string) (pattern, error) {
	rest, ok := strings.CutPrefix(text, "/")
	if !ok {
		return pattern{}, fmt.Errorf("field path %q must start with \"/\" (a JSON Pointer such as \"/customer/ssn\")", text)
	}
	p := pattern{text: text}
	for _, raw := range strings.Split(rest, "/") {
		if raw == "*" {
			p.tokens = append(p.tokens, nil)
			continue
		}
		name, err := unescapeToken(raw)
		if err != nil {
			return pattern{}, fmt.Errorf("field path %q: %w", text, err)
		}
		p.tokens = append(p.tokens, &name)
	}
	return p, nil
}

func unescapeToken(raw string) (string, error) {
	if !strings.Contains(raw, "~") {
		return raw, nil
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if raw[i] != '~' {
			b.WriteByte(raw[i])
			continue
		}
		switch {
		case i+1 < len(raw) && raw[i+1] == '0':
			b.WriteByte('~')
		case i+1 < len(raw) && raw[i+1] == '1':
			b.WriteByte('/')
		default:
			return "", fmt.Errorf("`~` must be followed by 0 or 1 (`~0` is `~`, `~1` is `/`)")
		}
		i++
	}
	return b.String(), nil
}

func (p pattern) prefixMatches(path []step) bool {
	for i, s := range path {
		if t := p.tokens[i]; t != nil && (s.kind != stepField || s.name != *t) {
			return false
		}
	}
	return true
}

func (p pattern) matches(path []step) bool {
	return len(p.tokens) == len(path) && p.prefixMatches(path)
}

// mayExtend: whether some path that starts with path could match.
func (p pattern) mayExtend(path []step) bool {
	return len(p.tokens) > len(path) && p.prefixMatches(path)
}

// selection is which fields are protected: any field carrying one of tags, and any
// field at one of patterns.
type selection struct {
	tags     []string
	patterns []pattern
}

func (s *selection) tagged(fieldTags []string) string {
	for _, tag := range fieldTags {
		for _, t := range s.tags {
			if t == tag {
				return tag
			}
		}
	}
	return ""
}

func (s *selection) byPath(path []step) string {
	for _, p := range s.patterns {
		if p.matches(path) {
			return p.text
		}
	}
	return ""
}

// why says why the field at path with fieldTags is selected ("" when it is not).
func (s *selection) why(path []step, fieldTags []string) string {
	if tag := s.tagged(fieldTags); tag != "" {
		return "is tagged " + tag
	}
	if p := s.byPath(path); p != "" {
		return "is selected by the path " + p
	}
	return ""
}

func (s *selection) selects(path []step, fieldTags []string) bool {
	return s.why(path, fieldTags) != ""
}

// mayExtendBelow: whether a configured path could select something below path (tags aside).
func (s *selection) mayExtendBelow(path []step) bool {
	for _, p := range s.patterns {
		if p.mayExtend(path) {
			return true
		}
	}
	return false
}

// pushToken appends one RFC 6901 reference token ("~" as "~0", "/" as "~1").
func pushToken(b *strings.Builder, name string) {
	b.WriteByte('/')
	for _, c := range name {
		switch c {
		case '~':
			b.WriteString("~0")
		case '/':
			b.WriteString("~1")
		default:
			b.WriteRune(c)
		}
	}
}

// token is located path loc with one more reference token.
func token(loc, name string) string {
	var b strings.Builder
	b.Grow(len(loc) + len(name) + 1)
	b.WriteString(loc)
	pushToken(&b, name)
	return b.String()
}

// index is located path loc with an array index.
func index(loc string, i int) string { return loc + "/" + strconv.Itoa(i) }
