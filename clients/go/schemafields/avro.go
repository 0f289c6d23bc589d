package schemafields

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/hamba/avro/v2"
)

// avroAPI decodes and encodes with strings and bytes up to 64 MiB (hamba's default is 1 MiB).
var avroAPI = avro.Config{MaxByteSliceSize: 64 << 20}.Freeze()

type avroSchema struct {
	schema  avro.Schema
	sel     *selection
	logical avroLogicals
}

func (*avroSchema) schemaType() SchemaType { return Avro }

// parseAvro parses an Avro schema and its references (each into one cache of its own,
// so two versions of a type never mix), then checks what the selection picks: only
// string and bytes fields, or unions of them with null, and arrays and maps of those;
// none with a logical type.
func parseAvro(s *RegisteredSchema, sel *selection) (*avroSchema, error) {
	cache := &avro.SchemaCache{}
	logical := avroLogicals{}
	// References come depth first (a reference before what it references): parse the
	// last first.
	for i := len(s.References) - 1; i >= 0; i-- {
		ref, err := avro.ParseWithCache(s.References[i].Text, "", cache)
		if err != nil {
			return nil, fmt.Errorf("%w: Avro reference %q: %w", ErrSchema, s.References[i].Name, err)
		}
		logical.find(s.References[i].Text, ref)
	}
	schema, err := avro.ParseWithCache(s.Text, "", cache)
	if err != nil {
		return nil, fmt.Errorf("%w: Avro schema: %w", ErrSchema, err)
	}
	logical.find(s.Text, schema)
	a := &avroSchema{schema: schema, sel: sel, logical: logical}
	checker := avroChecker{sel: sel, logical: logical, done: map[string]bool{}}
	if err := checker.walk(schema, nil, 0); err != nil {
		return nil, err
	}
	return a, nil
}

// avroLogicals is the logical type of each string and bytes schema that has one
// (hamba/avro keeps only those it knows, uuid and decimal, and drops the others).
type avroLogicals map[*avro.PrimitiveSchema]string

// find notes the logical types of the strings and bytes that schema text defines, as
// parsed into s: the JSON and the parsed schema walked side by side, where the text
// defines types (a type name leads to a definition found where it is written).
func (l avroLogicals) find(text string, s avro.Schema) {
	var raw any
	if json.Unmarshal([]byte(text), &raw) == nil {
		l.scan(raw, s)
	}
}

func (l avroLogicals) scan(raw any, s avro.Schema) {
	if s == nil {
		return
	}
	s = deref(s)
	switch raw := raw.(type) {
	case []any:
		union, ok := s.(*avro.UnionSchema)
		if !ok || len(union.Types()) != len(raw) {
			return
		}
		for i, branch := range raw {
			l.scan(branch, union.Types()[i])
		}
	case map[string]any:
		switch kind := raw["type"].(type) {
		case []any:
			l.scan(kind, s)
		case string:
			switch kind {
			case "string", "bytes":
				primitive, ok := s.(*avro.PrimitiveSchema)
				if logical, isText := raw["logicalType"].(string); ok && isText {
					l[primitive] = logical
				}
			case "record", "error":
				record, ok := s.(*avro.RecordSchema)
				fields, _ := raw["fields"].([]any)
				if !ok || len(fields) != len(record.Fields()) {
					return
				}
				for i, field := range fields {
					if field, ok := field.(map[string]any); ok {
						l.scan(field["type"], record.Fields()[i].Type())
					}
				}
			case "array":
				if array, ok := s.(*avro.ArraySchema); ok {
					l.scan(raw["items"], array.Items())
				}
			case "map":
				if m, ok := s.(*avro.MapSchema); ok {
					l.scan(raw["values"], m.Values())
				}
			}
		}
	}
}

// of is the logical type of s if it is a string or bytes that has one.
func (l avroLogicals) of(s avro.Schema) (string, bool) {
	primitive, ok := deref(s).(*avro.PrimitiveSchema)
	if !ok || primitive.Type() != avro.String && primitive.Type() != avro.Bytes {
		return "", false
	}
	if logical, ok := l[primitive]; ok {
		return logical, true
	}
	if primitive.Logical() != nil {
		return string(primitive.Logical().Type()), true
	}
	return "", false
}

func deref(s avro.Schema) avro.Schema {
	if ref, ok := s.(*avro.RefSchema); ok {
		return ref.Schema()
	}
	return s
}

func avroTags(field *avro.Field) ([]string, error) {
	raw := field.Prop("confluent:tags")
	if raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: field %s has a \"confluent:tags\" that is not an array", ErrSchema, field.Name())
	}
	tags := make([]string, len(list))
	for i, tag := range list {
		if tags[i], ok = tag.(string); !ok {
			return nil, fmt.Errorf("%w: field %s has a \"confluent:tags\" that is not all strings", ErrSchema, field.Name())
		}
	}
	return tags, nil
}

// leaf: whether s is a string or bytes, or a union of those and null, with the
// logical type that keeps it from being protected if there is one.
func (l avroLogicals) leaf(s avro.Schema) (ok bool, logical *string) {
	isLeaf := func(s avro.Schema) (bool, *string) {
		primitive, ok := deref(s).(*avro.PrimitiveSchema)
		if !ok || primitive.Type() != avro.String && primitive.Type() != avro.Bytes {
			return false, nil
		}
		if logical, has := l.of(primitive); has {
			return false, &logical
		}
		return true, nil
	}
	switch s := deref(s).(type) {
	case *avro.PrimitiveSchema:
		return isLeaf(s)
	case *avro.UnionSchema:
		some := false
		for _, branch := range s.Types() {
			if deref(branch).Type() == avro.Null {
				continue
			}
			ok, logical := isLeaf(branch)
			if !ok {
				return false, logical
			}
			some = true
		}
		return some, nil
	}
	return false, nil
}

// collection: whether s is an array or a map of strings or bytes (or unions of them and
// null), each element or value then protected.
func (l avroLogicals) collection(s avro.Schema) (ok bool, logical *string) {
	switch s := deref(s).(type) {
	case *avro.ArraySchema:
		return l.leaf(s.Items())
	case *avro.MapSchema:
		return l.leaf(s.Values())
	}
	return false, nil
}

// selectable: whether a selected field of schema s can be protected: a string or bytes
// (or a union of them and null), an array or a map of those, or a union of null and
// such fields; with the logical type that keeps it from being protected if there is one.
func (l avroLogicals) selectable(s avro.Schema) (ok bool, logical *string) {
	if ok, logical := l.leaf(s); ok || logical != nil {
		return ok, logical
	}
	switch s := deref(s).(type) {
	case *avro.ArraySchema, *avro.MapSchema:
		return l.collection(s)
	case *avro.UnionSchema:
		some := false
		for _, branch := range s.Types() {
			if deref(branch).Type() == avro.Null {
				continue
			}
			ok, logical := l.leaf(branch)
			if !ok && logical == nil {
				ok, logical = l.collection(branch)
			}
			if !ok {
				return false, logical
			}
			some = true
		}
		return some, nil
	}
	return false, nil
}

func (l avroLogicals) describe(s avro.Schema) string {
	s = deref(s)
	switch s := s.(type) {
	case *avro.RecordSchema:
		return "record " + s.FullName()
	case *avro.EnumSchema:
		return "enum " + s.FullName()
	case *avro.FixedSchema:
		return "fixed " + s.FullName()
	case *avro.ArraySchema:
		return "an array of " + l.describe(s.Items())
	case *avro.MapSchema:
		return "a map of " + l.describe(s.Values())
	case *avro.UnionSchema:
		out := "a union of"
		for i, b := range s.Types() {
			if i > 0 {
				out += ","
			}
			out += " " + l.describe(b)
		}
		return out
	case *avro.PrimitiveSchema:
		if logical, ok := l.of(s); ok {
			return string(s.Type()) + " (logical type " + logical + ")"
		}
		if s.Logical() != nil {
			return string(s.Type()) + " (logical type " + string(s.Logical().Type()) + ")"
		}
	}
	return string(s.Type())
}

// avroChecker walks the schema once: a selected field that cannot be protected (of
// another type than string or bytes, or an array or map of them; or with a logical
// type, which a ciphertext is not) is refused for every record of the schema, never
// passed in clear.
type avroChecker struct {
	sel     *selection
	logical avroLogicals
	done    map[string]bool // records walked where only tags decide below
}

const maxSchemaDepth = 256

func (c *avroChecker) walk(s avro.Schema, path []step, depth int) error {
	if depth > maxSchemaDepth {
		return fmt.Errorf("%w: types nest deeper than %d levels", ErrSchema, maxSchemaDepth)
	}
	switch s := deref(s).(type) {
	case *avro.RecordSchema:
		if !c.sel.mayExtendBelow(path) {
			if c.done[s.FullName()] {
				return nil
			}
			c.done[s.FullName()] = true
		}
		for _, field := range s.Fields() {
			tags, err := avroTags(field)
			if err != nil {
				return err
			}
			if err := c.child(field.Type(), with(path, fieldStep(field.Name())), tags, depth); err != nil {
				return err
			}
		}
	case *avro.ArraySchema:
		return c.child(s.Items(), with(path, elementStep), nil, depth)
	case *avro.MapSchema:
		return c.child(s.Values(), with(path, mapValueStep), nil, depth)
	case *avro.UnionSchema:
		for _, branch := range s.Types() {
			if err := c.walk(branch, path, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *avroChecker) child(s avro.Schema, path []step, tags []string, depth int) error {
	if why := c.sel.why(path, tags); why != "" {
		ok, logical := c.logical.selectable(s)
		switch {
		case logical != nil:
			remove := "the path"
			if c.sel.tagged(tags) != "" {
				remove = "the tag"
			}
			return fmt.Errorf("%w: field %s %s but is %s: a ciphertext is not a valid %s, so consumers would "+
				"fail to read the record; remove %s or the logical type",
				ErrSchema, schemaPath(path), why, c.logical.describe(s), *logical, remove)
		case !ok:
			return fmt.Errorf("%w: field %s %s but is %s; only string and bytes fields, and arrays and maps "+
				"of them, can be protected", ErrSchema, schemaPath(path), why, c.logical.describe(s))
		}
		return nil
	}
	return c.walk(s, path, depth+1)
}

type avroRecord struct {
	schema *avroSchema
	value  any
	found  []located
}

func (a *avroSchema) locate(body []byte, _ []int) (locatedRecord, error) {
	// ReadNext decodes on demand: recursive types too (ReadVal into an interface builds
	// its decoders for the whole schema first, endlessly for a recursive one).
	reader := avro.NewReader(nil, 0, avro.WithReaderConfig(avroAPI)).Reset(body)
	value := reader.ReadNext(a.schema)
	if reader.Error != nil {
		if errors.Is(reader.Error, io.EOF) {
			return nil, fmt.Errorf("%w: truncated", ErrDecode)
		}
		return nil, fmt.Errorf("%w: %w", ErrDecode, reader.Error)
	}
	var one [1]byte
	if reader.Read(one[:]); reader.Error == nil {
		return nil, fmt.Errorf("%w: trailing bytes after the record", ErrDecode)
	}
	rec := &avroRecord{schema: a, value: value}
	if err := rec.walk(a.schema, value, nil, "", nil, func(v any) { rec.value = v }); err != nil {
		return nil, err
	}
	return rec, nil
}

func (r *avroRecord) fields() []located { return r.found }

func (r *avroRecord) finish() (any, []byte, error) {
	body, err := appendAvro(nil, r.schema.schema, r.value, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: encoding the opened record: %w", ErrDecode, err)
	}
	return r.value, body, nil
}

// appendAvro encodes v, as Reader.ReadNext decodes it, under s: records, arrays (one
// block), maps (one block, keys sorted) and unions here, so recursive types work; every
// other type by hamba/avro's encoder (logical types included).
func appendAvro(out []byte, s avro.Schema, v any, depth int) ([]byte, error) {
	if depth > 10_000 {
		return nil, errors.New("nested too deep")
	}
	long := func(n int64) { out = binary.AppendVarint(out, n) }
	switch s := deref(s).(type) {
	case *avro.RecordSchema:
		record, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("record %s is a %T", s.FullName(), v)
		}
		for _, field := range s.Fields() {
			var err error
			if out, err = appendAvro(out, field.Type(), record[field.Name()], depth+1); err != nil {
				return nil, err
			}
		}
	case *avro.ArraySchema:
		items, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("an array is a %T", v)
		}
		if len(items) > 0 {
			long(int64(len(items)))
			for _, item := range items {
				var err error
				if out, err = appendAvro(out, s.Items(), item, depth+1); err != nil {
					return nil, err
				}
			}
		}
		long(0)
	case *avro.MapSchema:
		values, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("a map is a %T", v)
		}
		if len(values) > 0 {
			keys := make([]string, 0, len(values))
			for key := range values {
				keys = append(keys, key)
			}
			sort.Strings(keys)
			long(int64(len(keys)))
			for _, key := range keys {
				long(int64(len(key)))
				out = append(out, key...)
				var err error
				if out, err = appendAvro(out, s.Values(), values[key], depth+1); err != nil {
					return nil, err
				}
			}
		}
		long(0)
	case *avro.UnionSchema:
		if v == nil {
			_, i := s.Types().Get("null")
			if i < 0 {
				return nil, errors.New("null in a union without null")
			}
			long(int64(i))
			return out, nil
		}
		branchOf, ok := v.(map[string]any)
		if !ok || len(branchOf) != 1 {
			return nil, fmt.Errorf("a union is a %T", v)
		}
		for name, inner := range branchOf {
			branch, i := s.Types().Get(name)
			if branch == nil {
				return nil, fmt.Errorf("no union branch %q", name)
			}
			long(int64(i))
			return appendAvro(out, branch, inner, depth+1)
		}
	default:
		leaf, err := avroAPI.Marshal(s, v)
		if err != nil {
			return nil, err
		}
		out = append(out, leaf...)
	}
	return out, nil
}

func unexpected(path []step, v any) error {
	return fmt.Errorf("%w: at %s the decoded value is a %T", ErrDecode, schemaPath(path), v)
}

// walk finds the selected fields in value v of schema s, at schema path path and
// located path loc; set replaces v where it is.
func (r *avroRecord) walk(s avro.Schema, v any, path []step, loc string, tags []string, set func(any)) error {
	sel := r.schema.sel
	if sel.selects(path, tags) && len(path) > 0 {
		return r.protect(s, v, path, loc, set)
	}
	switch s := deref(s).(type) {
	case *avro.RecordSchema:
		record, ok := v.(map[string]any)
		if !ok {
			return unexpected(path, v)
		}
		for _, field := range s.Fields() {
			name := field.Name()
			fieldTags, err := avroTags(field)
			if err != nil {
				return err
			}
			err = r.walk(field.Type(), record[name], with(path, fieldStep(name)), token(loc, name), fieldTags,
				func(nv any) { record[name] = nv })
			if err != nil {
				return err
			}
		}
	case *avro.ArraySchema:
		items, ok := v.([]any)
		if !ok {
			return unexpected(path, v)
		}
		itemPath := with(path, elementStep)
		for i := range items {
			i := i
			if err := r.walk(s.Items(), items[i], itemPath, index(loc, i), nil, func(nv any) { items[i] = nv }); err != nil {
				return err
			}
		}
	case *avro.MapSchema:
		values, ok := v.(map[string]any)
		if !ok {
			return unexpected(path, v)
		}
		keys := make([]string, 0, len(values))
		for key := range values {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		valuePath := with(path, mapValueStep)
		for _, key := range keys {
			key := key
			if err := r.walk(s.Values(), values[key], valuePath, token(loc, key), nil,
				func(nv any) { values[key] = nv }); err != nil {
				return err
			}
		}
	case *avro.UnionSchema:
		if v == nil {
			return nil
		}
		branchOf, ok := v.(map[string]any)
		if !ok || len(branchOf) != 1 {
			return unexpected(path, v)
		}
		for name, inner := range branchOf {
			branch, _ := s.Types().Get(name)
			if branch == nil {
				return unexpected(path, v)
			}
			return r.walk(branch, inner, path, loc, nil, func(nv any) { branchOf[name] = nv })
		}
	}
	return nil
}

// protect notes selected field v: a string or bytes, an array or map of them, or a union
// of those with null (as the schema was checked to be).
func (r *avroRecord) protect(s avro.Schema, v any, path []step, loc string, set func(any)) error {
	switch s := deref(s).(type) {
	case *avro.UnionSchema:
		if v == nil {
			return nil // null: nothing to protect
		}
		branchOf, ok := v.(map[string]any)
		if !ok || len(branchOf) != 1 {
			return unexpected(path, v)
		}
		for name, inner := range branchOf {
			branch, _ := s.Types().Get(name)
			if branch == nil {
				return unexpected(path, v)
			}
			return r.protect(branch, inner, path, loc, func(nv any) { branchOf[name] = nv })
		}
	case *avro.ArraySchema:
		items, ok := v.([]any)
		if !ok {
			return unexpected(path, v)
		}
		itemPath := with(path, elementStep)
		for i := range items {
			i := i
			if err := r.protect(s.Items(), items[i], itemPath, index(loc, i), func(nv any) { items[i] = nv }); err != nil {
				return err
			}
		}
		return nil
	case *avro.MapSchema:
		values, ok := v.(map[string]any)
		if !ok {
			return unexpected(path, v)
		}
		keys := make([]string, 0, len(values))
		for key := range values {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		valuePath := with(path, mapValueStep)
		for _, key := range keys {
			key := key
			if err := r.protect(s.Values(), values[key], valuePath, token(loc, key),
				func(nv any) { values[key] = nv }); err != nil {
				return err
			}
		}
		return nil
	case *avro.PrimitiveSchema:
		if _, has := r.schema.logical.of(s); has {
			break
		}
		switch v := v.(type) {
		case string:
			if s.Type() == avro.String {
				r.found = append(r.found, located{path: loc, content: []byte(v),
					set: func(p []byte) { set(string(p)) }})
				return nil
			}
		case []byte:
			if s.Type() == avro.Bytes {
				r.found = append(r.found, located{path: loc, bytes: true, content: v,
					set: func(p []byte) { set(p) }})
				return nil
			}
		}
	}
	return fmt.Errorf("%w: field %s is selected but holds %s", ErrSchema, schemaPath(path), r.schema.logical.describe(s))
}
