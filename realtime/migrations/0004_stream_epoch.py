from django.db import migrations, models


class Migration(migrations.Migration):
    """Stream positions become ``(epoch, seq)``: every existing stream starts in epoch 1 at seq 0, so
    clients that saved a position before the upgrade (without an epoch) resume as before."""

    dependencies = [
        ("realtime", "0003_streamevent_subject"),
    ]

    operations = [
        migrations.AddField(
            model_name="stream",
            name="epoch",
            field=models.BigIntegerField(default=1),
        ),
        migrations.AddField(
            model_name="stream",
            name="epoch_seq",
            field=models.BigIntegerField(default=0),
        ),
    ]
