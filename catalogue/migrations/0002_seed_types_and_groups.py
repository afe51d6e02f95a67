"""Seed the five artwork types and the two groups (Curators write, Viewers read)."""

from django.db import migrations

TYPES = [
    ("drawings", "Drawing"),
    ("engraving", "Engraving"),
    ("iconography", "Iconography"),
    ("painting", "Painting"),
    ("sculpture", "Sculpture"),
]

CURATOR_PERMISSIONS = [
    ("catalogue", "artwork", ["add", "change", "delete", "view"]),
    ("catalogue", "labelcorrection", ["add", "view"]),
    ("catalogue", "prediction", ["view"]),
    ("catalogue", "artworktype", ["view"]),
    ("inference", "modelversion", ["view"]),
]
VIEWER_PERMISSIONS = [
    ("catalogue", "artwork", ["view"]),
    ("catalogue", "labelcorrection", ["view"]),
    ("catalogue", "prediction", ["view"]),
    ("catalogue", "artworktype", ["view"]),
    ("inference", "modelversion", ["view"]),
]


def seed(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    ArtworkType = apps.get_model("catalogue", "ArtworkType")
    for position, (slug, name) in enumerate(TYPES):
        ArtworkType.objects.update_or_create(slug=slug, defaults={"name": name, "position": position})

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group_name, spec in (("Curators", CURATOR_PERMISSIONS), ("Viewers", VIEWER_PERMISSIONS)):
        group, _ = Group.objects.get_or_create(name=group_name)
        for app_label, model, actions in spec:
            for action in actions:
                perm = Permission.objects.get(content_type__app_label=app_label, codename=f"{action}_{model}")
                group.permissions.add(perm)


class Migration(migrations.Migration):
    dependencies = [
        ("catalogue", "0001_initial"),
        ("inference", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
