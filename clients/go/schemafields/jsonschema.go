package schemafields

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// JSON Schema records: the schema documents (drafts 7, 2019-09 and 2020-12) read into a
// graph of subschemas with their $refs resolved (#/$defs/X, #/definitions/X, anchors,
// the registry's references by name or $id); a record is walked along it.
//
// Where the schema alone cannot tell which subschema describes a value, every candidate
// counts (fail closed: more is selected, never less): every branch of allOf, anyOf,
// oneOf, if/then/else and dependentSchemas; every target a $dynamicRef or $recursiveRef
// could have; contains for every element; unevaluatedProperties (unevaluatedItems) as
// additionalProperties (items). A selected field must be a string in its schema
// ("type": "string", or ["string", "null"]) and in the record (or null: nothing to open),
// with none of the keywords a ciphertext may fail (pattern, maxLength, format, enum,
// const, contentEncoding, contentMediaType) in any of its schemas; or an array of such
// strings ("type": "array", items) or a map of them ("type": "object" with no properties,
// additionalProperties), each element or value then selected.

type jsonTypes uint8

var jsonTypeNames = []string{"null", "boolean", "object", "array", "number", "integer", "string"}

const (
	jsonNull   jsonTypes = 1
	jsonObject jsonTypes = 1 << 2
	jsonArray  jsonTypes = 1 << 3
	jsonString jsonTypes = 1 << 6
)

// jsonStringConstraints are the keywords that constrain a string in a way its
// ciphertext (vault:v1:<base64>) may not satisfy: a consumer validating a record whose
// field is protected would refuse it. (minLength is no such keyword: a ciphertext is
// longer than its plaintext.)
var jsonStringConstraints = []string{"pattern", "maxLength", "format", "enum", "const", "contentEncoding",
	"contentMediaType"}

func (t jsonTypes) describe() string {
	var names []string
	for i, name := range jsonTypeNames {
		if t&(1<<i) != 0 {
			names = append(names, strconv.Quote(name))
		}
	}
	if len(names) == 1 {
		return strings.Trim(names[0], `"`)
	}
	return "[" + strings.Join(names, ", ") + "]"
}

type jsonPattern struct {
	text  string
	re    *regexp.Regexp
	err   error
	child int
}

// jsonObj is one subschema.
type jsonObj struct {
	at          string // where it is, for reasons: #/properties/ssn, customer.json#/$defs/Name
	hasTypes    bool
	types       jsonTypes
	tags        []string
	constraints []string // the jsonStringConstraints it has
	properties  map[string]int
	patterns    []jsonPattern
	additional  int // -1: none
	prefix      []int
	items       int
	contains    int
	applicators []int
}

func (o *jsonObj) edges() []int {
	var out []int
	for _, c := range o.properties {
		out = append(out, c)
	}
	for _, p := range o.patterns {
		out = append(out, p.child)
	}
	for _, c := range []int{o.additional, o.items, o.contains} {
		if c >= 0 {
			out = append(out, c)
		}
	}
	out = append(out, o.prefix...)
	return append(out, o.applicators...)
}

type jsonLocation struct {
	doc     int
	pointer string
}

type jsonTarget struct {
	loc  jsonLocation
	base string
}

type jsonDoc struct {
	label string
	base  string
	value any
}

const maxJSONObjs = 100_000

type jsonLoader struct {
	docs             []jsonDoc
	resources        map[string]jsonTarget
	anchors          map[string]jsonTarget
	dynamicAnchors   map[string][]jsonTarget
	recursiveAnchors []jsonTarget
	objs             []jsonObj
	pendingAt        map[int]jsonTarget
	ids              map[jsonLocation]int
	queue            []int
	regexps          map[string]jsonPattern
}

type jsonSchema struct {
	sel         *selection
	objs        []jsonObj
	taggedBelow []bool
}

func (*jsonSchema) schemaType() SchemaType { return JSON }

func parseJSONSchema(s *RegisteredSchema, sel *selection) (*jsonSchema, error) {
	l := &jsonLoader{resources: map[string]jsonTarget{}, anchors: map[string]jsonTarget{},
		dynamicAnchors: map[string][]jsonTarget{}, pendingAt: map[int]jsonTarget{}, ids: map[jsonLocation]int{},
		regexps: map[string]jsonPattern{}}
	if err := l.document("", s.Text); err != nil {
		return nil, err
	}
	for _, ref := range s.References {
		if err := l.document(ref.Name, ref.Text); err != nil {
			return nil, err
		}
	}
	l.obj(jsonTarget{jsonLocation{0, ""}, l.docs[0].base})
	for len(l.queue) > 0 {
		id := l.queue[len(l.queue)-1]
		l.queue = l.queue[:len(l.queue)-1]
		if err := l.fill(id); err != nil {
			return nil, err
		}
	}
	schema := &jsonSchema{sel: sel, objs: l.objs, taggedBelow: make([]bool, len(l.objs))}
	parents := make([][]int, len(l.objs))
	var work []int
	for id := range l.objs {
		for _, child := range l.objs[id].edges() {
			parents[child] = append(parents[child], id)
		}
		if sel.tagged(l.objs[id].tags) != "" {
			schema.taggedBelow[id] = true
			work = append(work, id)
		}
	}
	for len(work) > 0 {
		id := work[len(work)-1]
		work = work[:len(work)-1]
		for _, parent := range parents[id] {
			if !schema.taggedBelow[parent] {
				schema.taggedBelow[parent] = true
				work = append(work, parent)
			}
		}
	}
	return schema, nil
}

func (l *jsonLoader) document(name, text string) error {
	var value any
	if err := json.Unmarshal([]byte(text), &value); err != nil {
		what := "the schema"
		if name != "" {
			what = fmt.Sprintf("the referenced schema %q", name)
		}
		return fmt.Errorf("%w: %s is not JSON: %w", ErrSchema, what, err)
	}
	base := name
	if object, ok := value.(map[string]any); ok {
		if id, ok := object["$id"].(string); ok && !strings.HasPrefix(id, "#") {
			base = resolveURI(name, stripFragment(id))
		}
	}
	index := len(l.docs)
	if _, ok := l.resources[name]; !ok {
		l.resources[name] = jsonTarget{jsonLocation{index, ""}, base}
	}
	l.scan(index, value, "", base)
	l.docs = append(l.docs, jsonDoc{label: name, base: base, value: value})
	return nil
}

// scan registers the resources and anchors in value (at pointer in document doc).
func (l *jsonLoader) scan(doc int, value any, pointer, base string) {
	switch value := value.(type) {
	case []any:
		for i, item := range value {
			l.scan(doc, item, pointer+"/"+strconv.Itoa(i), base)
		}
	case map[string]any:
		here := jsonTarget{jsonLocation{doc, pointer}, base}
		if id, ok := value["$id"].(string); ok {
			if anchor, isAnchor := strings.CutPrefix(id, "#"); isAnchor {
				if anchor != "" {
					l.addAnchor(base+"#"+anchor, here)
				}
			} else {
				base = resolveURI(base, stripFragment(id))
				here.base = base
				if _, ok := l.resources[base]; !ok {
					l.resources[base] = here
				}
			}
		}
		for _, keyword := range []string{"$anchor", "$dynamicAnchor"} {
			if anchor, ok := value[keyword].(string); ok {
				l.addAnchor(base+"#"+anchor, here)
			}
		}
		if anchor, ok := value["$dynamicAnchor"].(string); ok {
			l.dynamicAnchors[anchor] = append(l.dynamicAnchors[anchor], here)
		}
		if value["$recursiveAnchor"] == true {
			l.recursiveAnchors = append(l.recursiveAnchors, here)
		}
		keys := make([]string, 0, len(value))
		for key := range value {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			switch key {
			case "enum", "const", "examples", "default": // values, not schemas
				continue
			}
			l.scan(doc, value[key], token(pointer, key), base)
		}
	}
}

func (l *jsonLoader) addAnchor(key string, target jsonTarget) {
	if _, ok := l.anchors[key]; !ok {
		l.anchors[key] = target
	}
}

// obj is the object at target, created (and queued to be filled) if new.
func (l *jsonLoader) obj(target jsonTarget) int {
	if id, ok := l.ids[target.loc]; ok {
		return id
	}
	id := len(l.objs)
	l.objs = append(l.objs, jsonObj{at: l.docs[target.loc.doc].label + "#" + target.loc.pointer,
		additional: -1, items: -1, contains: -1})
	l.ids[target.loc] = id
	l.pendingAt[id] = target
	l.queue = append(l.queue, id)
	return id
}

func jsonPointer(value any, pointer string) (any, bool) {
	if pointer == "" {
		return value, true
	}
	if !strings.HasPrefix(pointer, "/") {
		return nil, false
	}
	for _, raw := range strings.Split(pointer[1:], "/") {
		name, err := unescapeToken(raw)
		if err != nil {
			return nil, false
		}
		switch v := value.(type) {
		case map[string]any:
			if value, err = v[name], nil; value == nil {
				if _, ok := v[name]; !ok {
					return nil, false
				}
			}
		case []any:
			i, err := strconv.Atoi(name)
			if err != nil || i < 0 || i >= len(v) || name != strconv.Itoa(i) {
				return nil, false
			}
			value = v[i]
		default:
			return nil, false
		}
	}
	return value, true
}

func (l *jsonLoader) fill(id int) error {
	if len(l.objs) > maxJSONObjs {
		return fmt.Errorf("%w: more than %d subschemas to walk", ErrSchema, maxJSONObjs)
	}
	target := l.pendingAt[id]
	delete(l.pendingAt, id)
	// Filled apart and stored at the end: l.obj appends to l.objs as it goes.
	obj := l.objs[id]
	at := obj.at
	value, ok := jsonPointer(l.docs[target.loc.doc].value, target.loc.pointer)
	if !ok {
		return fmt.Errorf("%w: %s: there is no schema there", ErrSchema, at)
	}
	var m map[string]any
	switch value := value.(type) {
	case bool:
		return nil // true allows anything and false nothing: neither describes a field
	case map[string]any:
		m = value
	default:
		return fmt.Errorf("%w: %s is not a schema (an object or a boolean)", ErrSchema, at)
	}
	base := target.base
	if idText, ok := m["$id"].(string); ok && !strings.HasPrefix(idText, "#") {
		base = resolveURI(base, stripFragment(idText))
	}
	pointer := target.loc.pointer
	doc := target.loc.doc
	child := func(keyword string) int {
		v, ok := m[keyword]
		if _, isBool := v.(bool); !ok || isBool {
			return -1
		}
		return l.obj(jsonTarget{jsonLocation{doc, token(pointer, keyword)}, base})
	}
	list := func(keyword string) ([]int, error) {
		items, ok := m[keyword].([]any)
		if !ok {
			return nil, fmt.Errorf("%w: %s: `%s` is not an array", ErrSchema, at, keyword)
		}
		out := make([]int, len(items))
		for i := range items {
			out[i] = l.obj(jsonTarget{jsonLocation{doc, token(pointer, keyword) + "/" + strconv.Itoa(i)}, base})
		}
		return out, nil
	}
	members := func(keyword string) (map[string]any, error) {
		v, ok := m[keyword]
		if !ok {
			return nil, nil
		}
		object, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: %s: `%s` is not an object", ErrSchema, at, keyword)
		}
		return object, nil
	}

	var types jsonTypes
	named := func(v any) error {
		name, _ := v.(string)
		for i, n := range jsonTypeNames {
			if n == name {
				types |= 1 << i
				return nil
			}
		}
		return fmt.Errorf("%w: %s: `type` %v is not a JSON Schema type", ErrSchema, at, v)
	}
	switch t := m["type"].(type) {
	case nil:
	case string:
		if err := named(t); err != nil {
			return err
		}
		obj.hasTypes = true
	case []any:
		for _, name := range t {
			if err := named(name); err != nil {
				return err
			}
		}
		obj.hasTypes = true
	default:
		return fmt.Errorf("%w: %s: `type` is neither a string nor an array", ErrSchema, at)
	}
	obj.types = types
	switch tags := m["confluent:tags"].(type) {
	case nil:
	case []any:
		for _, tag := range tags {
			text, ok := tag.(string)
			if !ok {
				return fmt.Errorf("%w: %s: `confluent:tags` lists a non-string", ErrSchema, at)
			}
			obj.tags = append(obj.tags, text)
		}
	default:
		return fmt.Errorf("%w: %s: `confluent:tags` is not an array", ErrSchema, at)
	}

	for _, keyword := range jsonStringConstraints {
		if _, ok := m[keyword]; ok {
			obj.constraints = append(obj.constraints, keyword)
		}
	}

	properties, err := members("properties")
	if err != nil {
		return err
	}
	if len(properties) > 0 {
		obj.properties = map[string]int{}
	}
	for name := range properties {
		obj.properties[name] = l.obj(jsonTarget{jsonLocation{doc, token(token(pointer, "properties"), name)}, base})
	}
	patterns, err := members("patternProperties")
	if err != nil {
		return err
	}
	texts := make([]string, 0, len(patterns))
	for text := range patterns {
		texts = append(texts, text)
	}
	sort.Strings(texts)
	for _, text := range texts {
		p, ok := l.regexps[text]
		if !ok {
			p = jsonPattern{text: text}
			p.re, p.err = regexp.Compile(text)
			l.regexps[text] = p
		}
		p.child = l.obj(jsonTarget{jsonLocation{doc, token(token(pointer, "patternProperties"), text)}, base})
		obj.patterns = append(obj.patterns, p)
	}
	if _, ok := m["additionalProperties"]; ok {
		obj.additional = child("additionalProperties")
	} else {
		// Approximated by the members this schema names itself: a superset of the members
		// it describes, so nothing selected is missed.
		obj.additional = child("unevaluatedProperties")
	}
	rest := "items"
	if _, ok := m["prefixItems"]; ok {
		if obj.prefix, err = list("prefixItems"); err != nil {
			return err
		}
	} else if _, ok := m["items"].([]any); ok {
		if obj.prefix, err = list("items"); err != nil {
			return err
		}
		rest = "additionalItems"
	}
	if _, ok := m[rest]; ok {
		obj.items = child(rest)
	} else {
		obj.items = child("unevaluatedItems")
	}
	obj.contains = child("contains")

	// Every branch applies as far as selection goes (fail closed).
	for _, keyword := range []string{"allOf", "anyOf", "oneOf"} {
		if _, ok := m[keyword]; ok {
			branches, err := list(keyword)
			if err != nil {
				return err
			}
			obj.applicators = append(obj.applicators, branches...)
		}
	}
	for _, keyword := range []string{"if", "then", "else"} {
		if c := child(keyword); c >= 0 {
			obj.applicators = append(obj.applicators, c)
		}
	}
	for _, keyword := range []string{"dependentSchemas", "dependencies"} {
		deps, err := members(keyword)
		if err != nil {
			return err
		}
		names := make([]string, 0, len(deps))
		for name, schema := range deps {
			if _, ok := schema.(map[string]any); ok { // `dependencies` also lists required properties
				names = append(names, name)
			}
		}
		sort.Strings(names)
		for _, name := range names {
			obj.applicators = append(obj.applicators,
				l.obj(jsonTarget{jsonLocation{doc, token(token(pointer, keyword), name)}, base}))
		}
	}
	if ref, ok := m["$ref"]; ok {
		text, ok := ref.(string)
		if !ok {
			return fmt.Errorf("%w: %s: `$ref` is not a string", ErrSchema, at)
		}
		t, err := l.resolveRef(text, base, at)
		if err != nil {
			return err
		}
		obj.applicators = append(obj.applicators, l.obj(t))
	}
	for _, keyword := range []string{"$dynamicRef", "$recursiveRef"} {
		ref, ok := m[keyword]
		if !ok {
			continue
		}
		text, ok := ref.(string)
		if !ok {
			return fmt.Errorf("%w: %s: `%s` is not a string", ErrSchema, at, keyword)
		}
		// Where the dynamic scope leads depends on the path a record took: every schema it
		// could lead to applies (fail closed), the static target too.
		t, err := l.resolveRef(text, base, at)
		if err != nil {
			return err
		}
		targets := []jsonTarget{t}
		if keyword == "$recursiveRef" {
			targets = append(targets, l.recursiveAnchors...)
		} else if _, anchor, ok := strings.Cut(text, "#"); ok {
			targets = append(targets, l.dynamicAnchors[anchor]...)
		}
		for _, t := range targets {
			obj.applicators = append(obj.applicators, l.obj(t))
		}
	}
	l.objs[id] = obj
	return nil
}

// resolveRef is where a $ref (#/$defs/X, other.json, other.json#/definitions/X, #anchor) leads.
func (l *jsonLoader) resolveRef(reference, base, at string) (jsonTarget, error) {
	unresolved := fmt.Errorf("%w: %s: `$ref` %q names no schema in the document or its references",
		ErrSchema, at, reference)
	uri, fragment, _ := strings.Cut(reference, "#")
	resolved := resolveURI(base, uri)
	fragment, err := url.PathUnescape(fragment)
	if err != nil {
		return jsonTarget{}, unresolved
	}
	// As resolved against the base URI, or as written: a reference's name is what the
	// referencing schema writes.
	for _, candidate := range []string{resolved, uri} {
		if fragment == "" || strings.HasPrefix(fragment, "/") {
			resource, ok := l.resources[candidate]
			if !ok {
				continue
			}
			pointer := resource.loc.pointer + fragment
			if _, ok := jsonPointer(l.docs[resource.loc.doc].value, pointer); !ok {
				return jsonTarget{}, unresolved
			}
			return jsonTarget{jsonLocation{resource.loc.doc, pointer}, resource.base}, nil
		}
		if t, ok := l.anchors[candidate+"#"+fragment]; ok {
			return t, nil
		}
	}
	return jsonTarget{}, unresolved
}

func stripFragment(uri string) string {
	before, _, _ := strings.Cut(uri, "#")
	return before
}

// resolveURI is reference resolved against base (RFC 3986 5.2, as far as $ids and $refs
// need it: URLs, and relative names such as "customer.json").
func resolveURI(base, reference string) string {
	if reference == "" {
		return base
	}
	if ref, err := url.Parse(reference); err == nil && ref.Scheme != "" {
		return ref.String()
	}
	if b, err := url.Parse(base); err == nil && b.Scheme != "" {
		if ref, err := url.Parse(reference); err == nil {
			if b.Host != "" && b.Path == "" {
				b.Path = "/"
			}
			return b.ResolveReference(ref).String()
		}
	}
	// Both relative: as paths.
	if strings.HasPrefix(reference, "/") {
		return cleanPath(reference)
	}
	dir := ""
	if slash := strings.LastIndex(base, "/"); slash >= 0 {
		dir = base[:slash+1]
	}
	return cleanPath(dir + reference)
}

func cleanPath(path string) string {
	segments := strings.Split(path, "/")
	var out []string
	for i, segment := range segments {
		last := i == len(segments)-1
		switch segment {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 || len(out) == 1 && out[0] != "" {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, segment)
		}
	}
	return strings.Join(out, "/")
}

// ---------------------------------------------------------------------------------------
// Records

// jsonNode is a JSON value of a record, with where its string sits in the record.
type jsonNode struct {
	kind       byte // 'o' object, 'a' array, 's' string, 'n' number, 'b' boolean, 'z' null
	text       string
	start, end int // a string's span, quotes included
	names      []string
	members    []*jsonNode
	elements   []*jsonNode
}

type jsonRecord struct {
	schema *jsonSchema
	body   []byte
	found  []located
	spans  [][2]int
	values []string
}

func (s *jsonSchema) locate(body []byte, _ []int) (locatedRecord, error) {
	root, err := parseJSONRecord(body)
	if err != nil {
		return nil, err
	}
	rec := &jsonRecord{schema: s, body: body}
	if err := rec.walk(root, []int{0}, [][]step{nil}, nil, ""); err != nil {
		return nil, err
	}
	return rec, nil
}

func (r *jsonRecord) fields() []located { return r.found }

func (r *jsonRecord) finish() (any, []byte, error) {
	out := make([]byte, 0, len(r.body))
	copied := 0
	for i, span := range r.spans {
		out = append(out, r.body[copied:span[0]]...)
		out = appendJSONString(out, r.values[i])
		copied = span[1]
	}
	out = append(out, r.body[copied:]...)
	decoder := json.NewDecoder(strings.NewReader(string(out)))
	decoder.UseNumber()
	var value any
	if err := decoder.Decode(&value); err != nil {
		return nil, nil, fmt.Errorf("%w: the opened record: %w", ErrDecode, err)
	}
	return value, out, nil
}

func appendJSONString(out []byte, text string) []byte {
	const hex = "0123456789abcdef"
	out = append(out, '"')
	for _, c := range text {
		switch {
		case c == '"' || c == '\\':
			out = append(out, '\\', byte(c))
		case c == '\n':
			out = append(out, '\\', 'n')
		case c == '\r':
			out = append(out, '\\', 'r')
		case c == '\t':
			out = append(out, '\\', 't')
		case c < 0x20 || c == 0x2028 || c == 0x2029:
			out = append(out, '\\', 'u', hex[c>>12&0xf], hex[c>>8&0xf], hex[c>>4&0xf], hex[c&0xf])
		default:
			out = append(out, string(c)...)
		}
	}
	return append(out, '"')
}

// closure is objs and every schema that applies where they do, sorted.
func (s *jsonSchema) closure(objs []int) []int {
	seen := map[int]bool{}
	var out []int
	work := append([]int(nil), objs...)
	for len(work) > 0 {
		id := work[len(work)-1]
		work = work[:len(work)-1]
		if seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, id)
		work = append(work, s.objs[id].applicators...)
	}
	sort.Ints(out)
	return out
}

const maxJSONDepth = 512

func describeNode(n *jsonNode) string {
	return map[byte]string{'o': "an object", 'a': "an array", 'n': "a number", 'b': "a boolean", 'z': "null",
		's': "a string"}[n.kind]
}

// walk finds the selected strings in node n, described by objs and reached by the
// schema paths paths (those a configured path may still match), at schema path at (for
// reasons) and located path loc.
func (r *jsonRecord) walk(n *jsonNode, objs []int, paths [][]step, at []step, loc string) error {
	s := r.schema
	sel := s.sel
	objs = s.closure(objs)
	var alive [][]step
	selectedBy := ""
	for _, p := range paths {
		if text := sel.byPath(p); text != "" && selectedBy == "" && len(p) > 0 {
			selectedBy = "at the configured path " + text
		}
		if sel.mayExtendBelow(p) {
			alive = append(alive, p)
		}
	}
	for _, o := range objs {
		if tag := sel.tagged(s.objs[o].tags); tag != "" {
			selectedBy = "tagged " + tag
			break
		}
	}
	if selectedBy != "" {
		where := schemaPath(at)
		if err := s.checkString(objs, where, selectedBy); err != nil {
			kind, cerr := s.checkCollection(objs, where, selectedBy)
			switch {
			case kind == 0:
				return err
			case cerr != nil:
				return cerr
			}
			return r.collection(n, kind, at, loc, selectedBy)
		}
		return r.selected(n, loc, where, selectedBy)
	}
	relevant := len(alive) > 0
	for _, o := range objs {
		relevant = relevant || s.taggedBelow[o]
	}
	if !relevant {
		return nil
	}
	switch n.kind {
	case 'o':
		for i, name := range n.names {
			var byName, byMap []int
			for _, o := range objs {
				obj := &s.objs[o]
				named, isNamed := obj.properties[name]
				if isNamed {
					byName = append(byName, named)
				}
				matched := false
				for _, p := range obj.patterns {
					if p.err != nil {
						if len(alive) > 0 || s.taggedBelow[p.child] {
							return fmt.Errorf("%w: %s: patternProperties %q cannot be matched (%v), and fields to "+
								"select may be among the members it describes", ErrSchema, obj.at, p.text, p.err)
						}
						continue
					}
					if p.re.MatchString(name) {
						byMap, matched = append(byMap, p.child), true
					}
				}
				if !matched && !isNamed && obj.additional >= 0 {
					byMap = append(byMap, obj.additional)
				}
			}
			var childPaths [][]step
			if len(byName) > 0 {
				for _, p := range alive {
					childPaths = append(childPaths, with(p, fieldStep(name)))
				}
			}
			if len(byMap) > 0 {
				for _, p := range alive {
					childPaths = append(childPaths, with(p, mapValueStep))
				}
			}
			childAt := with(at, fieldStep(name))
			if len(byName) == 0 {
				childAt = with(at, mapValueStep)
			}
			if err := r.walk(n.members[i], append(byName, byMap...), childPaths, childAt, token(loc, name)); err != nil {
				return err
			}
		}
	case 'a':
		var childPaths [][]step
		for _, p := range alive {
			childPaths = append(childPaths, with(p, elementStep))
		}
		for i, element := range n.elements {
			var schemas []int
			for _, o := range objs {
				obj := &s.objs[o]
				if i < len(obj.prefix) {
					schemas = append(schemas, obj.prefix[i])
				} else if obj.items >= 0 {
					schemas = append(schemas, obj.items)
				}
				if obj.contains >= 0 {
					schemas = append(schemas, obj.contains)
				}
			}
			if err := r.walk(element, schemas, childPaths, with(at, elementStep), index(loc, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// selected notes selected string n (null: nothing to protect).
func (r *jsonRecord) selected(n *jsonNode, loc, where, selectedBy string) error {
	switch n.kind {
	case 's':
		r.found = append(r.found, located{path: loc, content: []byte(n.text)})
		k := len(r.spans)
		r.spans = append(r.spans, [2]int{n.start, n.end})
		r.values = append(r.values, n.text)
		r.found[len(r.found)-1].set = func(p []byte) { r.values[k] = string(p) }
	case 'z':
	default:
		return fmt.Errorf("%w: field %s is selected (%s) but holds %s, not a string", ErrDecode, where, selectedBy,
			describeNode(n))
	}
	return nil
}

// collection notes each element (kind 'a') or member value (kind 'o') of selected
// array or map n (null: nothing to protect).
func (r *jsonRecord) collection(n *jsonNode, kind byte, at []step, loc, selectedBy string) error {
	where := schemaPath(at)
	switch {
	case n.kind == 'z':
	case n.kind == 'a' && kind == 'a':
		elementAt := schemaPath(with(at, elementStep))
		for i, element := range n.elements {
			if err := r.selected(element, index(loc, i), elementAt, selectedBy); err != nil {
				return err
			}
		}
	case n.kind == 'o' && kind == 'o':
		valueAt := schemaPath(with(at, mapValueStep))
		for i, name := range n.names {
			if err := r.selected(n.members[i], token(loc, name), valueAt, selectedBy); err != nil {
				return err
			}
		}
	default:
		expected := "an array"
		if kind == 'o' {
			expected = "an object"
		}
		return fmt.Errorf("%w: field %s is selected (%s) but holds %s, not %s of strings", ErrDecode, where,
			selectedBy, describeNode(n), expected)
	}
	return nil
}

// checkCollection: whether a selected field's schemas make it an array of strings
// ("type": "array" with items; kind 'a') or a map of strings ("type": "object" with no
// properties, with additionalProperties; kind 'o'), either perhaps null, each element or
// value then selected. Kind 0 if the schemas do not make it an array or such an object;
// an error if its elements or values are not strings a ciphertext can replace.
func (s *jsonSchema) checkCollection(objs []int, where, why string) (kind byte, err error) {
	var types jsonTypes
	typed := false
	for _, o := range objs {
		if s.objs[o].hasTypes {
			types |= s.objs[o].types
			typed = true
		}
	}
	if !typed {
		return 0, nil
	}
	is := func(k jsonTypes) bool { return types&^(k|jsonNull) == 0 && types&k != 0 }
	noProperties := true
	for _, o := range objs {
		noProperties = noProperties && len(s.objs[o].properties) == 0
	}
	switch {
	case is(jsonArray):
		kind = 'a'
	case is(jsonObject) && noProperties:
		kind = 'o'
	default:
		return 0, nil
	}
	// The schemas of the elements or values, and whether some items or
	// additionalProperties describes those no other keyword does.
	var schemas []int
	described := false
	for _, o := range objs {
		obj := &s.objs[o]
		if kind == 'a' {
			schemas = append(schemas, obj.prefix...)
			for _, c := range []int{obj.items, obj.contains} {
				if c >= 0 {
					schemas = append(schemas, c)
				}
			}
			described = described || obj.items >= 0
		} else {
			for _, p := range obj.patterns {
				schemas = append(schemas, p.child)
			}
			if obj.additional >= 0 {
				schemas = append(schemas, obj.additional)
			}
			described = described || obj.additional >= 0
		}
	}
	if !described {
		what, keyword := "an array", "items"
		if kind == 'o' {
			what, keyword = "an object", "additionalProperties"
		}
		return kind, fmt.Errorf("%w: field %s is selected (%s) but is %s whose schema (%s) has no `%s` schema: "+
			"only string fields, and arrays and maps of them, can be protected, so it must say \"%s\": "+
			"{\"type\": \"string\"}", ErrSchema, where, why, what, s.objs[objs[0]].at, keyword, keyword)
	}
	return kind, s.checkString(s.closure(schemas), where+"/*", why)
}

// checkString: whether a selected field's schemas make it a string (or null) that a
// ciphertext can replace.
func (s *jsonSchema) checkString(objs []int, where, why string) error {
	var types jsonTypes
	typed := false
	for _, o := range objs {
		if s.objs[o].hasTypes {
			types |= s.objs[o].types
			typed = true
		}
	}
	if !typed {
		return fmt.Errorf("%w: field %s is selected (%s) but its schema gives it no type; only string fields, "+
			"and arrays and maps of them, can be protected, so it must say \"type\": \"string\"",
			ErrSchema, where, why)
	}
	if types&^(jsonString|jsonNull) != 0 || types&jsonString == 0 {
		return fmt.Errorf("%w: field %s is selected (%s) but its schema type is %s; only string fields, and "+
			"arrays and maps of them, can be protected", ErrSchema, where, why, types.describe())
	}
	// A constraint of a schema that allows no string (the null branch of a oneOf)
	// constrains no ciphertext.
	for _, o := range objs {
		obj := &s.objs[o]
		if len(obj.constraints) > 0 && (!obj.hasTypes || obj.types&jsonString != 0) {
			keyword := obj.constraints[0]
			remove := "the path"
			if strings.HasPrefix(why, "tagged") {
				remove = "the tag"
			}
			return fmt.Errorf("%w: field %s is selected (%s) but its schema has `%s` (%s): a ciphertext may not "+
				"satisfy it, so consumers that validate records would refuse the record; remove %s or `%s`",
				ErrSchema, where, why, keyword, obj.at, remove, keyword)
		}
	}
	return nil
}
