"""What was read, for people (``describe_study``) and for JSON (``summarize_study``).

Only UIDs, sizes, spacing, views and reasons appear: no patient attribute, so the output can go
to logs and terminals. Sizes come from the header, so a study read without decoding its pixels
(``read_study(decode_pixels=False)``) is summarised alike.
"""

from __future__ import annotations

from dicom.read import FrontalImage, Study


def summarize_study(study: Study) -> dict[str, object]:
    """A JSON-ready summary: series, frontal images and what was set aside with why."""
    return {
        "study_instance_uid": study.study_instance_uid,
        "series": [
            {
                "series_instance_uid": s.series_instance_uid,
                "modality": s.modality,
                "instances": len(s.sop_instance_uids),
            }
            for s in study.series
        ],
        "frontal_images": [_image_summary(image) for image in study.frontal_images],
        "set_aside": [
            {"sop_instance_uid": a.sop_instance_uid, "source": a.source, "reason": a.reason}
            for a in study.set_aside
        ],
    }


def _image_summary(image: FrontalImage) -> dict[str, object]:
    spacing = image.pixel_spacing_mm
    return {
        "sop_instance_uid": image.sop_instance_uid,
        "series_instance_uid": image.series_instance_uid,
        "view_position": image.view_position,
        "rows": int(image.dataset.Rows),
        "columns": int(image.dataset.Columns),
        "pixel_spacing_mm": list(spacing.spacing) if spacing else None,
        "pixel_spacing_source": spacing.source if spacing else None,
    }


def describe_study(study: Study) -> str:
    """A few lines a person reads in a terminal."""
    lines = [
        f"study {study.study_instance_uid}: {len(study.series)} series, "
        f"{len(study.frontal_images)} frontal image(s), {len(study.set_aside)} set aside"
    ]
    for image in study.frontal_images:
        rows, columns = int(image.dataset.Rows), int(image.dataset.Columns)
        spacing = image.pixel_spacing_mm
        where = (
            f"{spacing.spacing[0]:.3f} x {spacing.spacing[1]:.3f} mm ({spacing.source})"
            if spacing
            else "no pixel spacing in the header"
        )
        lines.append(
            f"  frontal {image.view_position or '(view not stated)'} "
            f"{rows}x{columns}, {where}: {image.sop_instance_uid}"
        )
    for item in study.set_aside:
        label = item.sop_instance_uid or item.source
        lines.append(f"  set aside {label}: {item.reason}")
    return "\n".join(lines)
