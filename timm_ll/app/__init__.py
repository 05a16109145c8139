"""The training app around the plugin: the recipe, data sources, DataModules, the run loop, the surveys at
init and the ``timm-ll`` command. It imports Lightning; the plugin (``timm_ll``'s models, layers, init and
converter) never imports it."""
