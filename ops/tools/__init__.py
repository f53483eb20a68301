"""Applications that run beside the platform and reach it only over its public HTTP API.

`sandbox` fakes eBay, Etsy and Vinted for tests and demos; `plugin_client` is the reference browser plugin
(`stoflow plugin`). Each imports nothing of the platform but `ops.config`, and neither imports the other.
"""
