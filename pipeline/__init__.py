"""Mock Chandra observations of galaxy clusters.

Data flows one way: config -> population -> gas -> photons -> events -> images -> dataset.
"""
