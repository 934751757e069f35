"""Strict, fast reading of legacy request bodies, driven by the Spyne models.

WCF's data-contract serializer refused what Spyne's deserializer lets
through: an element in the wrong namespace, an unknown one, one out of
order, one twice, or a required one missing. This reader walks the parsed
tree once against each model's ordered ``_type_info``, refuses those with
``a:DeserializationFailed`` naming the element, and builds plain slotted
records (the translation core reads attributes only) instead of a Spyne
object per element, which dominates the cost of a 10,000-device request.

Values are kept exactly as sent, white space included, as WCF's serializer
kept them; an empty element is an empty string, an absent or ``xsi:nil``
one is None.
"""

from dataclasses import make_dataclass
from functools import cache

from spyne.model.complex import Array, ComplexModelBase

from gateway import ns
from gateway.soap.faults import DeserializationFailed

# Longer than any legitimate value of the legacy contract (device ids, names,
# URLs); an attacker's megabyte-long text node stops here.
MAX_TEXT = 10_000
_XSI_NIL = f"{{{ns.XSI}}}nil"


def read(element, model):
    """``element`` as a record of ``model`` (a Spyne ComplexModel), or DeserializationFailed."""
    return _read(element, _shape(model), _local(element.tag))


def read_headers(elements, models):
    """The values of the header ``models`` (simple types) found among ``elements``, in order."""
    found = {}
    for element in elements:
        if element.tag in found:
            raise DeserializationFailed(f"Header/{_local(element.tag)}", "appears twice")
        found[element.tag] = element
    return [_header(found.get(_tag(model)), model) for model in models]


class _Field:
    __slots__ = ("name", "tag", "required", "item_tag", "shape")

    def __init__(self, name, tag, required, item_tag, shape):
        self.name, self.tag, self.required = name, tag, required
        self.item_tag, self.shape = item_tag, shape  # item_tag: None unless a collection


class _Shape:
    __slots__ = ("record", "fields", "index", "names")

    def __init__(self, model):
        namespace = model.get_namespace()
        self.fields = []
        for name, field_model in model._type_info.items():
            tag = f"{{{namespace}}}{name}"
            required = field_model.Attributes.min_occurs >= 1
            if issubclass(field_model, Array):
                ((item_name, item_model),) = field_model._type_info.items()
                item_tag = f"{{{field_model.get_namespace()}}}{item_name}"
                self.fields.append(_Field(name, tag, required, item_tag, _shape_or_text(item_model)))
            else:
                self.fields.append(_Field(name, tag, required, None, _shape_or_text(field_model)))
        self.index = {field.tag: position for position, field in enumerate(self.fields)}
        self.names = {_local(field.tag): field for field in self.fields}
        self.record = make_dataclass(
            model.get_type_name(), [(field.name, object, None) for field in self.fields], slots=True
        )


@cache
def _shape(model):
    return _Shape(model)


def _shape_or_text(model):
    return _shape(model) if issubclass(model, ComplexModelBase) else None


def _read(element, shape, path):
    if element.get(_XSI_NIL) == "true":
        return None
    _no_text(element.text, path)
    values = [None] * len(shape.fields)
    seen = [False] * len(shape.fields)
    position = 0
    for child in element:
        index = shape.index.get(child.tag)
        if index is None:
            raise DeserializationFailed(f"{path}/{_local(child.tag)}", _unexpected(child.tag, shape, position))
        field = shape.fields[index]
        child_path = f"{path}/{field.name}"
        if seen[index]:
            raise DeserializationFailed(child_path, "appears twice")
        if index < position:
            raise DeserializationFailed(
                child_path, f"is out of order: it comes before {shape.fields[position - 1].name}"
            )
        seen[index] = True
        position = index + 1
        values[index] = _value(child, field, child_path)
        _no_text(child.tail, path)
    for field, value in zip(shape.fields, values):
        if field.required and value is None:
            raise DeserializationFailed(f"{path}/{field.name}", "is required and missing")
    return shape.record(*values)


def _value(element, field, path):
    if field.item_tag is None:
        return _text(element, path) if field.shape is None else _read(element, field.shape, path)
    if element.get(_XSI_NIL) == "true":
        return None
    _no_text(element.text, path)
    items = []
    item_name = _local(field.item_tag)
    for number, item in enumerate(element, 1):
        item_path = f"{path}/{item_name}[{number}]"
        if item.tag != field.item_tag:
            raise DeserializationFailed(
                f"{path}/{_local(item.tag)}", f"is not expected; {_local(field.tag)} holds only {_described(field.item_tag)}"
            )
        items.append(_text(item, item_path) if field.shape is None else _read(item, field.shape, item_path))
        _no_text(item.tail, path)
    return items


def _text(element, path):
    if element.get(_XSI_NIL) == "true":
        return None
    if len(element):
        raise DeserializationFailed(f"{path}/{_local(element[0].tag)}", f"is not expected: {_local(element.tag)} holds text")
    text = element.text or ""
    if len(text) > MAX_TEXT:
        raise DeserializationFailed(path, f"is {len(text):,} characters long; at most {MAX_TEXT:,} are accepted")
    return text


def _header(element, model):
    if element is None:
        return None
    return _text(element, f"Header/{_local(element.tag)}")


def _no_text(text, path):
    if text and not text.isspace():
        raise DeserializationFailed(path, "holds text between its elements")


def _unexpected(tag, shape, position):
    name = _local(tag)
    expected = [field.name for field in shape.fields[position:]]
    same_name = shape.names.get(name)
    if same_name is not None and same_name.tag != tag:
        return f"is in the wrong namespace: {_described(tag)}, expected {_described(same_name.tag)}"
    if not expected:
        return f"{_described(tag)} is not expected: no more elements are allowed here"
    return f"{_described(tag)} is not expected; expecting one of: {', '.join(expected)}"


def _described(tag):
    namespace, _, name = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    return f"element '{name}' from namespace '{namespace}'"


def _tag(model):
    return f"{{{model.get_namespace()}}}{model.get_type_name()}"


def _local(tag):
    return tag.rpartition("}")[2]
