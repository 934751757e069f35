"""Strict, fast reading of legacy request bodies, driven by the Spyne models.

WCF's data-contract serializer refused what Spyne's deserializer lets
through: an element in the wrong namespace, an unknown one, one out of
order, one twice, or a required one missing. This reader walks the parsed
tree once against each model's ordered ``_type_info``, refuses those with
``a:DeserializationFailed`` naming the element, and builds named tuples
(the translation core reads attributes only) instead of a Spyne object per
element, which dominates the cost of a 10,000-device request. Collections
are tuples too: holding only strings and tuples, a request's records drop
out of the cyclic collector's sight at its first pass.
The hot loop does only what every element needs; the element's path for
the fault text is worked out from the tree once something is refused.

Values are kept exactly as sent, white space included, as WCF's serializer
kept them; an empty element is an empty string, an absent or ``xsi:nil``
one is None.

A collection whose items all carry nothing (every child nil or absent, at
any depth) is read as absent: soap4r's generic driver sends each optional
collection the caller left out as such a skeleton, a one-item list of nils.
An item carrying anything at all stays, and the rules judge it.

A collection can have a reader of its own (``shortcut``) for the shape
nearly every client sends; whatever that reader declines is read here.
"""

from collections import namedtuple
from functools import cache

from spyne.model.complex import Array, ComplexModelBase

from gateway import ns
from gateway.soap.faults import DeserializationFailed

# Longer than any legitimate value of the legacy contract (device ids, names,
# URLs); an attacker's megabyte-long text node stops here.
MAX_TEXT = 10_000
_XSI_NIL = f"{{{ns.XSI}}}nil"
_HOLDS_TEXT = "holds text between its elements"
# A record from its list of values, without a Python-level __init__: 30,000 of them in a large request.
_new_record = tuple.__new__
# Collection model -> a reader of its own for the shape nearly every client
# sends, faster than the walk below: it returns the collection's value, or
# None to leave the element to the walk (which says what is wrong, if anything).
_shortcuts = {}


def shortcut(collection_model, reader):
    """Have ``reader(element)`` try each ``collection_model`` element first."""
    _shortcuts[collection_model] = reader
    _shape.cache_clear()  # shapes built before know nothing of it


def read(element, model):
    """``element`` as a record of ``model`` (a Spyne ComplexModel), or DeserializationFailed."""
    shape = _shape(model)
    try:
        return _read(element, shape)
    except _Refused as refused:
        raise DeserializationFailed(_path(element, shape, refused.element), refused.problem) from None


def read_headers(elements, models):
    """The values of the header ``models`` (simple types) found among ``elements``, in order."""
    found = {}
    for element in elements:
        if element.tag in found:
            raise DeserializationFailed(f"Header/{_local(element.tag)}", "appears twice")
        found[element.tag] = element
    values = []
    for model in models:
        element = found.get(f"{{{model.get_namespace()}}}{model.get_type_name()}")
        try:
            values.append(None if element is None else _text(element))
        except _Refused as refused:
            raise DeserializationFailed(f"Header/{_local(refused.element.tag)}", refused.problem) from None
    return values


class _Refused(Exception):
    """Raised in the hot loop with the offending element; the path is built after."""

    def __init__(self, element, problem):
        self.element, self.problem = element, problem


class _Field:
    __slots__ = ("name", "tag", "item_tag", "shape", "is_text", "shortcut")

    def __init__(self, name, tag, item_tag, shape, shortcut=None):
        self.name, self.tag = name, tag
        self.item_tag = item_tag  # None unless the field is a collection
        self.shape = shape  # None for text
        self.is_text = item_tag is None and shape is None
        self.shortcut = shortcut


class _Shape:
    __slots__ = ("record", "fields", "index", "names", "required")

    def __init__(self, model):
        namespace = model.get_namespace()
        self.fields = []
        for name, field_model in model._type_info.items():
            tag = f"{{{namespace}}}{name}"
            if issubclass(field_model, Array):
                ((item_name, item_model),) = field_model._type_info.items()
                item_tag = f"{{{field_model.get_namespace()}}}{item_name}"
                self.fields.append(_Field(name, tag, item_tag, _shape_or_text(item_model), _shortcuts.get(field_model)))
            else:
                self.fields.append(_Field(name, tag, None, _shape_or_text(field_model)))
        self.index = {field.tag: position for position, field in enumerate(self.fields)}
        self.names = {_local(field.tag): field for field in self.fields}
        self.required = [
            position for position, (_, field_model) in enumerate(model._type_info.items())
            if field_model.Attributes.min_occurs >= 1
        ]
        self.record = namedtuple(model.get_type_name(), [field.name for field in self.fields])


@cache
def _shape(model):
    return _Shape(model)


def _shape_or_text(model):
    return _shape(model) if issubclass(model, ComplexModelBase) else None


def _read(element, shape):
    text = element.text
    if text is not None and not text.isspace():
        raise _Refused(element, _HOLDS_TEXT)
    fields, index_of = shape.fields, shape.index
    values = [None] * len(fields)
    position = 0
    for child in element:
        index = index_of.get(child.tag)
        if index is None or index < position:
            raise _Refused(child, _misplaced(child, shape, index, position))
        position = index + 1
        field = fields[index]
        if field.is_text:
            # Inline, as device identifiers make up most of a large request;
            # _text handles the rare cases (empty, nil, nested) and refusals.
            text = child.text
            values[index] = text if text is not None and not len(child) and len(text) <= MAX_TEXT else _text(child)
        elif field.item_tag is not None:
            value = None if field.shortcut is None else field.shortcut(child)
            values[index] = _items(child, field) if value is None else value
        elif len(child) or child.get(_XSI_NIL) != "true":
            values[index] = _read(child, field.shape)
        tail = child.tail
        if tail is not None and not tail.isspace():
            raise _Refused(element, _HOLDS_TEXT)
    for position in shape.required:
        if values[position] is None:
            raise _Refused(element, f"{fields[position].name} is required and missing")
    return _new_record(shape.record, values)


def _items(element, field):
    if not len(element):
        return None if element.get(_XSI_NIL) == "true" else ()
    text = element.text
    if text is not None and not text.isspace():
        raise _Refused(element, _HOLDS_TEXT)
    item_tag, shape = field.item_tag, field.shape
    items = []
    for item in element:
        if item.tag != item_tag:
            raise _Refused(item, f"is not expected here: {_local(field.tag)} holds only {_described(item_tag)}")
        items.append(_text(item) if shape is None else _read(item, shape))
        tail = item.tail
        if tail is not None and not tail.isspace():
            raise _Refused(element, _HOLDS_TEXT)
    if shape is not None and not any(map(_carries_anything, items)):
        return None
    return tuple(items)


def _carries_anything(record):
    # A real list is judged by its first item.
    return tuple.count(record, None) < len(record)


def _text(element):
    if len(element):
        raise _Refused(element[0], f"is not expected: {_local(element.tag)} holds text")
    text = element.text
    if text is None:
        return None if element.get(_XSI_NIL) == "true" else ""
    if len(text) > MAX_TEXT:
        raise _Refused(element, f"is {len(text):,} characters long; at most {MAX_TEXT:,} are accepted")
    return text


# -- after a refusal: what to say, and where --------------------------------


def _misplaced(child, shape, index, position):
    if index is None:
        return _unexpected(child.tag, shape, position)
    field = shape.fields[index]
    earlier = child.itersiblings(field.tag, preceding=True)
    if next(earlier, None) is not None:
        return "appears twice"
    return f"is out of order: it comes after {shape.fields[position - 1].name}"


def _unexpected(tag, shape, position):
    name = _local(tag)
    expected = [field.name for field in shape.fields[position:]]
    same_name = shape.names.get(name)
    if same_name is not None and same_name.tag != tag:
        return f"is in the wrong namespace: {_described(tag)}, expected {_described(same_name.tag)}"
    if not expected:
        return f"{_described(tag)} is not expected: no more elements are allowed here"
    return f"{_described(tag)} is not expected; expecting one of: {', '.join(expected)}"


def _path(root, shape, element):
    """``Root/Field/Item[n]/...`` down to ``element``, numbering collection items from 1."""
    chain = [element]
    while chain[-1] is not root and chain[-1].getparent() is not None:
        chain.append(chain[-1].getparent())
    parts = [_local(root.tag)]
    collection = None  # the field whose items the next element is one of
    for node in reversed(chain[:-1]):
        name = _local(node.tag)
        if collection is not None:
            number = 1 + sum(1 for _ in node.itersiblings(node.tag, preceding=True))
            parts.append(f"{name}[{number}]")
            shape, collection = collection.shape, None
            continue
        parts.append(name)
        if shape is None or node.tag not in shape.index:
            break  # the element the reader refused: its name is all there is
        field = shape.fields[shape.index[node.tag]]
        shape, collection = (None, field) if field.item_tag is not None else (field.shape, None)
    return "/".join(parts)


def _described(tag):
    namespace, _, name = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    return f"element '{name}' from namespace '{namespace}'"


def _local(tag):
    return tag.rpartition("}")[2]
