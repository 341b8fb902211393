"""The editor's words in English and Spanish: the page's labels and the script's messages.

The language is chosen in the page and remembered in a cookie; without one the browser's
``Accept-Language`` decides, and English is the fallback.
"""

from __future__ import annotations

from typing import Literal

Language = Literal["en", "es"]
LANGUAGES: dict[Language, str] = {"en": "English", "es": "Español"}
COOKIE = "cadencia-editor-lang"

PAGE: dict[Language, dict[str, str]] = {
    "en": {
        "title": "Cadencia · Template editor", "subtitle": "template editor", "language": "Language",
        "api_key": "API key", "use_key": "Use key", "templates": "Templates", "new_template": "New template",
        "edit": "Edit", "key": "Key", "channel": "Channel", "locale": "Locale", "variant": "Variant",
        "body": "Body", "content_sid": "Content SID (approved template, outside the 24-hour window)",
        "content_variables": "Content variables (JSON)", "subject": "Subject", "text": "Text part",
        "html": "HTML part", "voice_script": "Voice script (live answer)",
        "voicemail_script": "Voicemail script (name and callback number only)", "ivr_prompts": "IVR prompts (JSON)",
        "variables_schema": "Variables schema (JSON Schema)", "save": "Save draft", "save_publish": "Save & publish",
        "preview": "Preview", "sample_data": "(sample data)", "cost": "Cost", "lint": "Lint", "history": "History",
        "version": "Version", "combination": "Combination", "created": "Created", "by": "By", "state": "State",
        "actions": "Actions", "changes": "Changes", "approvals": "Waiting for approval",
    },
    "es": {
        "title": "Cadencia · Editor de plantillas", "subtitle": "editor de plantillas", "language": "Idioma",
        "api_key": "Clave de API", "use_key": "Usar clave", "templates": "Plantillas",
        "new_template": "Nueva plantilla",
        "edit": "Editar", "key": "Clave", "channel": "Canal", "locale": "Configuración regional", "variant": "Variante",
        "body": "Cuerpo", "content_sid": "Content SID (plantilla aprobada, fuera de la ventana de 24 horas)",
        "content_variables": "Variables de contenido (JSON)", "subject": "Asunto", "text": "Parte de texto",
        "html": "Parte HTML", "voice_script": "Guion de voz (respuesta en vivo)",
        "voicemail_script": "Guion de buzón de voz (solo nombre y número de devolución)",
        "ivr_prompts": "Mensajes del IVR (JSON)", "variables_schema": "Esquema de variables (JSON Schema)",
        "save": "Guardar borrador", "save_publish": "Guardar y publicar", "preview": "Vista previa",
        "sample_data": "(datos de ejemplo)", "cost": "Costo", "lint": "Revisión", "history": "Historial",
        "version": "Versión", "combination": "Combinación", "created": "Creada", "by": "Por", "state": "Estado",
        "actions": "Acciones", "changes": "Cambios", "approvals": "Esperando aprobación",
    },
}

SCRIPT: dict[Language, dict[str, str]] = {
    "en": {
        "no_problems": "No problems found.", "segment": "segment", "segments": "segments", "units": "units",
        "per_segment": "per segment", "key_set": "Key set.", "could_not_load": "Could not load templates: {error}",
        "editing": "Editing {key} v{version}", "published": "Published {key} v{version}",
        "pending": "{key} v{version} waits for a second editor's approval",
        "not_published": "Not published: {error}", "saved": "Saved {key} v{version}", "not_saved": "Not saved: {error}",
        "key_required": "A key is required.", "new_template": "New template", "live": "Live", "publish": "Publish",
        "publish_aria": "Publish (rollback to) version {version}", "live_aria": "Live version {version}",
        "open": "Open", "diff": "Diff", "no_differences": "No differences.", "state_published": "published",
        "state_rolled_back": "rolled back", "state_draft": "draft",
        "cost_line": "{per_send} {currency} per send · {per_10k} {currency} per 10,000 sends "
                     "({segments} × {per_segment})",
        "no_price": "No SMS price configured for this country.",
        "rewrite_line": "GSM-7 rewrite: {segments} {segments_word} · {per_send} {currency} per send · "
                        "{per_10k} {currency} per 10,000 sends",
        "use_rewrite": "Use the GSM-7 rewrite", "over_budget": "Over the budget of {budget} segments.",
        "approve": "Approve", "reject": "Reject", "approved": "Approved: {key} v{version} is live",
        "rejected": "Rejected {key} v{version}", "invalid_json": "{field} is not valid JSON", "line": "line",
        "col": "col", "requested_by": "v{version} requested by {who}",
        "action_save": "saved", "action_publish": "published", "action_rollback": "rolled back",
        "action_publish_requested": "asked to publish", "action_rejected": "rejected",
        "approved_by": "approved by {who}",
    },
    "es": {
        "no_problems": "No se encontraron problemas.", "segment": "segmento", "segments": "segmentos",
        "units": "unidades", "per_segment": "por segmento", "key_set": "Clave guardada.",
        "could_not_load": "No se pudieron cargar las plantillas: {error}", "editing": "Editando {key} v{version}",
        "published": "Publicada {key} v{version}",
        "pending": "{key} v{version} espera la aprobación de un segundo editor",
        "not_published": "No publicada: {error}", "saved": "Guardada {key} v{version}",
        "not_saved": "No guardada: {error}", "key_required": "La clave es obligatoria.",
        "new_template": "Nueva plantilla", "live": "Publicada", "publish": "Publicar",
        "publish_aria": "Publicar (volver a) la versión {version}", "live_aria": "Versión publicada {version}",
        "open": "Abrir", "diff": "Diferencias", "no_differences": "Sin diferencias.", "state_published": "publicada",
        "state_rolled_back": "revertida", "state_draft": "borrador",
        "cost_line": "{per_send} {currency} por envío · {per_10k} {currency} por 10.000 envíos "
                     "({segments} × {per_segment})",
        "no_price": "No hay precio de SMS configurado para este país.",
        "rewrite_line": "Versión GSM-7: {segments} {segments_word} · {per_send} {currency} por envío · "
                        "{per_10k} {currency} por 10.000 envíos",
        "use_rewrite": "Usar la versión GSM-7", "over_budget": "Supera el presupuesto de {budget} segmentos.",
        "approve": "Aprobar", "reject": "Rechazar", "approved": "Aprobada: {key} v{version} está publicada",
        "rejected": "Rechazada {key} v{version}", "invalid_json": "{field} no es JSON válido", "line": "línea",
        "col": "col", "requested_by": "v{version} solicitada por {who}",
        "action_save": "guardó", "action_publish": "publicó", "action_rollback": "revirtió",
        "action_publish_requested": "pidió publicar", "action_rejected": "rechazó",
        "approved_by": "aprobada por {who}",
    },
}


def choose(query: str | None, cookie: str | None, accept_language: str | None) -> Language:
    """The page's language: the one asked for, else the remembered one, else the browser's, else English."""
    for candidate in (query, cookie):
        if candidate in LANGUAGES:
            return candidate
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return "en"
