"""The machine's desktop: ``tool.desktop.*`` (``tools``), its programs (``programs``), the screen
as a picture (``image``) and an action as the xdotool command that carries it out (``input``)."""
