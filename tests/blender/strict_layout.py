"""A stand-in for UILayout that says no as Blender would: every call is checked against the RNA.

The bpy wheel has no window, so a panel's draw() never meets a real UILayout in the suite.
`StrictLayout` takes its place and checks each call against `bpy.types.UILayout.bl_rna` of the
Blender it runs on (every tier runs it, so a function, keyword, icon or enum value missing from
one version fails there):
- the function exists; the positional arguments fit its parameters, every keyword is one of
  them, the required ones are given, and each value has the parameter's type;
- enum values (icons, alignment, progress type, …) are among the parameter's items;
- `prop`, `template_ID`, `template_list`, `prop_search`, … name a property that exists on their
  owner (an RNA property, or an ID property such as '["Socket_2"]');
- operator ids (`operator`, and `template_ID`'s new/open/unlink) are registered in bpy.ops, and
  what the draw code sets on an operator's properties exists there with a valid value;
- layout attributes that are set (`alert`, `scale_y`, `alignment`, …) exist and are writable.
Containers (`row`, `column`, `box`, `split`, `panel`, …) return sub-layouts that check too. Every
call is also recorded, so tests assert on what would appear on screen.
"""

from __future__ import annotations

import re
from typing import Any

import bpy

_ID_PROPERTY = re.compile(r'^\[(["\'])(.+)\1\]$')

#: parameters that name a property of the pointer passed as the given other parameter
_PROPERTY_OF = {
    "prop": {"property": "data"},
    "props_enum": {"property": "data"},
    "prop_menu_enum": {"property": "data"},
    "prop_with_popover": {"property": "data"},
    "prop_with_menu": {"property": "data"},
    "prop_tabs_enum": {"property": "data"},
    "prop_enum": {"property": "data"},
    "prop_search": {"property": "data", "search_property": "search_data"},
    "prop_decorator": {"property": "data"},
    "template_ID": {"property": "data"},
    "template_ID_preview": {"property": "data"},
    "template_any_ID": {"property": "data", "type_property": "data"},
    "template_search": {"property": "data", "search_property": "search_data"},
    "template_list": {"propname": "dataptr", "active_propname": "active_dataptr"},
    "template_icon_view": {"property": "data"},
    "template_curve_mapping": {"property": "data"},
    "template_color_ramp": {"property": "data"},
    "template_image": {"property": "data"},
    "template_path_builder": {"property": "data"},
    "panel_prop": {"property": "data"},
}
#: parameters that are operator ids
_OPERATOR_PARAMS = {
    "operator": ("operator",),
    "operator_menu_hold": ("operator",),
    "operator_enum": ("operator",),
    "operator_menu_enum": ("operator",),
    "template_ID": ("new", "open", "unlink"),
    "template_ID_preview": ("new", "open", "unlink"),
    "template_search": ("new", "unlink"),
}


class LayoutError(AssertionError):
    """A call a real UILayout would refuse."""


def operator_rna(idname: str) -> Any:
    """The RNA of the registered operator `idname` ("module.name"); LayoutError if there is none."""
    module, _, name = idname.partition(".")
    if not module or not name or "." in name:
        raise LayoutError(f"{idname!r} is not an operator id (module.name)")
    try:
        return getattr(getattr(bpy.ops, module), name).get_rna_type()
    except (AttributeError, KeyError) as exc:
        raise LayoutError(f"no operator {idname!r} is registered") from exc


def _enum_ids(prop: Any) -> set[str]:
    return {item.identifier for item in prop.enum_items}


def check_value(where: str, prop: Any, value: Any) -> None:
    """LayoutError unless `value` is what the RNA property (or function parameter) `prop` takes."""
    kind = prop.type
    if value is None:
        if kind == 'POINTER' and not getattr(prop, "is_required", False):
            return
        raise LayoutError(f"{where}: None for a {kind} parameter")
    if kind == 'STRING':
        ok = isinstance(value, str)
    elif kind == 'BOOLEAN':
        ok = isinstance(value, (bool, int)) if not prop.is_array else True
    elif kind == 'INT':
        ok = isinstance(value, int) and not isinstance(value, bool) or prop.is_array
    elif kind == 'FLOAT':
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) or prop.is_array
    elif kind == 'ENUM':
        items = _enum_ids(prop)
        if prop.is_enum_flag:
            ok = isinstance(value, (set, frozenset)) and value <= items
        else:
            # an enum with no static items (filled at run time, e.g. a dynamic list) takes any string
            ok = isinstance(value, str) and (value in items or not items)
        if not ok:
            raise LayoutError(f"{where}: {value!r} is not one of its {len(items)} values "
                              f"({', '.join(sorted(items)[:8])}…)")
    elif kind == 'POINTER':
        ok = isinstance(value, bpy.types.bpy_struct) or hasattr(value, "bl_rna")
    else:  # COLLECTION
        ok = True
    if not ok:
        raise LayoutError(f"{where}: {value!r} ({type(value).__name__}) is not a {kind}")


def check_property_of(where: str, owner: Any, name: str) -> None:
    """LayoutError unless `owner` has the property `name` (RNA, or an ID property '["key"]')."""
    if owner is None:
        raise LayoutError(f"{where}: the owner of {name!r} is None")
    match = _ID_PROPERTY.match(name)
    if match:
        keys = owner.keys() if hasattr(owner, "keys") else ()
        if match.group(2) not in keys:
            raise LayoutError(f"{where}: {type(owner).__name__} has no ID property {match.group(2)!r}")
        return
    rna = getattr(owner, "bl_rna", None)
    if rna is None:
        raise LayoutError(f"{where}: {owner!r} is not Blender data")
    if name not in rna.properties:
        raise LayoutError(f"{where}: {rna.identifier} has no property {name!r}")


class OperatorProperties:
    """What `operator()` returns: setting a property the operator does not have, or a value it
    does not take, fails as it does in Blender. `values` holds what the draw code set."""

    def __init__(self, idname: str) -> None:
        object.__setattr__(self, "idname", idname)
        object.__setattr__(self, "rna", operator_rna(idname))
        object.__setattr__(self, "values", {})

    def __setattr__(self, name: str, value: Any) -> None:
        props = self.rna.properties
        if name not in props or name == "rna_type":
            raise LayoutError(f"operator {self.idname!r} has no property {name!r}")
        check_value(f"{self.idname}.{name}", props[name], value)
        self.values[name] = value

    def __getattr__(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        raise AttributeError(name)


class StrictLayout:
    """A UILayout that checks every call against `bpy.types.UILayout.bl_rna` and records it."""

    def __init__(self, calls: list[tuple[str, tuple[Any, ...], dict[str, Any], Any]] | None = None,
                 depth: int = 0) -> None:
        rna = bpy.types.UILayout.bl_rna
        object.__setattr__(self, "_rna", rna)
        object.__setattr__(self, "calls", [] if calls is None else calls)
        object.__setattr__(self, "depth", depth)
        object.__setattr__(self, "_attrs", {
            "use_property_split": False, "use_property_decorate": True, "enabled": True, "active": True,
            "alert": False, "scale_x": 1.0, "scale_y": 1.0, "alignment": 'EXPAND',
        })

    # layout attributes
    def __setattr__(self, name: str, value: Any) -> None:
        props = self._rna.properties
        if name not in props or name == "rna_type":
            raise LayoutError(f"UILayout has no attribute {name!r}")
        if props[name].is_readonly:
            raise LayoutError(f"UILayout.{name} is read-only")
        check_value(f"UILayout.{name}", props[name], value)
        self._attrs[name] = value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name in self._attrs:
            return self._attrs[name]
        if name in self._rna.properties:
            return None
        function = self._rna.functions.get(name)
        if function is None:
            raise LayoutError(f"UILayout has no function or attribute {name!r}")

        def call(*args: Any, **kwargs: Any) -> Any:
            result = self._check_call(name, function, args, kwargs)
            self.calls.append((name, args, kwargs, result))
            return result

        return call

    def _check_call(self, name: str, function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        params = [p for p in function.parameters if not p.is_output]
        outputs = [p for p in function.parameters if p.is_output]
        if len(args) > len(params):
            raise LayoutError(f"UILayout.{name}() takes {len(params)} arguments, {len(args)} given")
        given = dict(zip((p.identifier for p in params), args, strict=False))
        for key, value in kwargs.items():
            if key in given:
                raise LayoutError(f"UILayout.{name}(): {key!r} given twice")
            given[key] = value
        by_name = {p.identifier: p for p in params}
        for key, value in given.items():
            if key not in by_name:
                raise LayoutError(f"UILayout.{name}() has no keyword {key!r} (it takes: {', '.join(by_name)})")
            check_value(f"UILayout.{name}({key}=…)", by_name[key], value)
        missing = [p.identifier for p in params if p.is_required and p.identifier not in given]
        if missing:
            raise LayoutError(f"UILayout.{name}() is missing {', '.join(missing)}")
        for prop_param, owner_param in _PROPERTY_OF.get(name, {}).items():
            if given.get(prop_param):
                check_property_of(f"UILayout.{name}({prop_param}=…)", given.get(owner_param), given[prop_param])
        for op_param in _OPERATOR_PARAMS.get(name, ()):
            if given.get(op_param):
                operator_rna(given[op_param])
        if name == "template_list":
            list_type = given["listtype_name"]
            if not isinstance(getattr(bpy.types, list_type, None), type):
                raise LayoutError(f"template_list: no UIList {list_type!r} is registered")
        results = [self._output(name, p, given) for p in outputs]
        if not results:
            return None
        return results[0] if len(results) == 1 else tuple(results)

    def _output(self, name: str, param: Any, given: dict[str, Any]) -> Any:
        fixed = getattr(param, "fixed_type", None)
        kind = fixed.identifier if fixed is not None else ""
        if kind == "UILayout":
            return StrictLayout(self.calls, self.depth + 1)
        if kind == "OperatorProperties":
            return OperatorProperties(given["operator"])
        return None

    # what a user would see
    def labels(self) -> list[str]:
        return [kw.get("text", "") for name, _a, kw, _r in self.calls if name == "label"]

    def text(self) -> str:
        """The labels read as one text: a message wrapped over several labels reads whole."""
        return " ".join(self.labels())

    def operators(self) -> list[tuple[str, dict[str, Any]]]:
        return [(args[0] if args else kw["operator"], result.values)
                for name, args, kw, result in self.calls if name == "operator"]

    def named(self, name: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(args, kw) for n, args, kw, _r in self.calls if n == name]
